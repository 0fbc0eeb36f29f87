"""Persistent network namespaces, made in-process (no ``ip netns`` subprocess per container).

A namespace is kept alive by bind-mounting its nsfs file on ``<dir>/<name>`` (as ``ip netns``
does). Creating one: a short-lived thread unshares its own network namespace (network
namespaces are per thread), brings ``lo`` up with one ioctl, bind-mounts
``/proc/thread-self/ns/net`` and ends. Work *inside* a namespace (opening the embedded DNS
server's sockets) uses :func:`run_in_netns`: a fresh thread ``setns``-es into it, runs the
function and ends, so no pooled thread is ever left in a container's namespace.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from skiff.errors import RuntimeFailure
from skiff.store.mount import MS_BIND, _mount, is_mountpoint, unmount

CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]

T = TypeVar("T")


def _in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a new thread that is thrown away afterwards (its namespaces with it)."""
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            result.append(fn())
        except BaseException as e:  # re-raised in the caller
            error.append(e)

    t = threading.Thread(target=body, name="skiff-netns", daemon=True)
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sh14x", b"lo", 0)
        flags = struct.unpack("16sh14x", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sh14x", b"lo", flags | _IFF_UP))


def create(path: Path) -> None:
    """Create a network namespace with ``lo`` up, pinned at ``path`` (which must not exist)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
    os.close(fd)

    def make() -> None:
        if _libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise RuntimeFailure(f"creating a network namespace failed: {os.strerror(err)}")
        _loopback_up()
        _mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", path, None, MS_BIND, None)

    try:
        _in_thread(make)
    except BaseException:
        remove(path)
        raise


def remove(path: Path) -> None:
    """Unpin and delete a namespace file; the namespace ends when nothing else holds it."""
    unmount(path)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno != errno.EBUSY:
            raise


def exists(path: Path) -> bool:
    """True if ``path`` is a pinned namespace (the file is a mount point)."""
    return path.exists() and is_mountpoint(path)


def run_in_netns(path: str | Path, fn: Callable[[], T]) -> T:
    """Call ``fn`` inside the network namespace at ``path`` (a pinned file or /proc/PID/ns/net)."""

    def body() -> T:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise RuntimeFailure(f"entering network namespace {path} failed: {os.strerror(err)}")
        finally:
            os.close(fd)
        return fn()

    return _in_thread(body)


def add_addresses(path: str | Path, ifname: str, addresses: tuple[str, ...]) -> None:
    """Add addresses (``169.254.8.8``, host prefix unless given) to an interface inside a netns."""
    import ipaddress

    from pyroute2 import IPRoute

    def add() -> None:
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=ifname)[0]
            for text in addresses:
                iface = ipaddress.ip_interface(text)
                ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)

    run_in_netns(path, add)
