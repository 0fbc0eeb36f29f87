"""Per-container files skiffd writes and binds into the container: hostname, hosts, resolv.conf."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from skiff.runtime.spec import BindFile
from skiff.types import ContainerSpec


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _host_resolv_conf() -> str:
    for candidate in ("/run/systemd/resolve/resolv.conf", "/etc/resolv.conf"):
        try:
            text = Path(candidate).read_text()
        except OSError:
            continue
        # A stub resolver on the host's loopback is unreachable from a container's netns.
        lines = [ln for ln in text.splitlines() if not ln.startswith("nameserver 127.")]
        return "\n".join(lines) + "\n"
    return ""


def hosts_text(
    spec: ContainerSpec, hostname: str, ip_address: str = "", extra: Sequence[tuple[str, str]] = ()
) -> str:
    """The container's /etc/hosts: localhost, its own address, links (``extra``), --add-host."""
    fqdn = f"{hostname}.{spec.domainname}" if spec.domainname else hostname
    if spec.host.network_mode == "host":
        hosts = Path("/etc/hosts").read_text()
    else:
        hosts = (
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
        )
        if ip_address:
            hosts += (
                f"{ip_address}\t{fqdn} {hostname}\n" if fqdn != hostname else f"{ip_address}\t{hostname}\n"
            )
    for addr, names in extra:
        hosts += f"{addr}\t{names}\n"
    for entry in spec.host.extra_hosts:
        name, _, addr = entry.partition(":")
        if addr == "host-gateway":
            continue
        hosts += f"{addr}\t{name}\n"
    return hosts


def rewrite_hosts(state_dir: Path, text: str) -> None:
    """Replace /etc/hosts in place: the container's bind mount holds the file's inode."""
    with open(state_dir / "hosts", "r+") as f:
        f.write(text)
        f.truncate()


def write_container_files(
    state_dir: Path,
    spec: ContainerSpec,
    hostname: str,
    ip_address: str = "",
    *,
    extra_hosts: Sequence[tuple[str, str]] = (),
    embedded_dns: bool = False,
) -> list[BindFile]:
    """Write /etc/hostname, /etc/hosts and /etc/resolv.conf for a container; return their binds.

    ``embedded_dns``: the container is on a user-defined network, so its resolver is skiffd's
    DNS server at 127.0.0.11 (which forwards to ``--dns`` servers or the host's).
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(state_dir / "hostname", hostname + "\n")
    _atomic_write(state_dir / "hosts", hosts_text(spec, hostname, ip_address, extra_hosts))
    resolv = _host_resolv_conf()
    if embedded_dns:
        lines = ["nameserver 127.0.0.11"]
        search = spec.host.dns_search or tuple(
            w for ln in resolv.splitlines() if ln.startswith("search") for w in ln.split()[1:]
        )
        if search:
            lines.append("search " + " ".join(search))
        opts = ["ndots:0", *spec.host.dns_options]
        lines.append("options " + " ".join(opts))
        resolv = "\n".join(lines) + "\n"
    elif spec.host.dns or spec.host.dns_search or spec.host.dns_options:
        lines = [f"nameserver {ns}" for ns in spec.host.dns] or [
            ln for ln in resolv.splitlines() if ln.startswith("nameserver")
        ]
        if spec.host.dns_search:
            lines.append("search " + " ".join(spec.host.dns_search))
        if spec.host.dns_options:
            lines.append("options " + " ".join(spec.host.dns_options))
        resolv = "\n".join(lines) + "\n"
    _atomic_write(state_dir / "resolv.conf", resolv)
    return [
        BindFile(str(state_dir / "hostname"), "/etc/hostname"),
        BindFile(str(state_dir / "hosts"), "/etc/hosts"),
        BindFile(str(state_dir / "resolv.conf"), "/etc/resolv.conf"),
    ]
