"""What a default ``skiff run`` isolates, seen from inside the container (driven through the CLI)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from tests.daemon_fixture import Daemon
from tests.e2e._skiff import DOCKER_DEFAULT_CAPS, named, ok, running, sh_out, status_field

PRIVATE_NAMESPACES = ("pid", "net", "ipc", "mnt", "uts")


@pytest.fixture(autouse=True, scope="module")
def _no_leftover_containers(daemon: Daemon) -> Iterator[None]:
    before = ok(daemon, "ps", "-aq", "--no-trunc").split()
    yield
    assert ok(daemon, "ps", "-aq", "--no-trunc").split() == before


def test_pid_1_is_the_command(daemon: Daemon) -> None:
    with named(daemon) as name:
        out = ok(daemon, "run", "--name", name, "busybox", "cat", "/proc/1/cmdline")
    assert out == "cat\0/proc/1/cmdline\0"


def test_only_the_containers_processes_are_visible(daemon: Daemon) -> None:
    out = sh_out(daemon, [], "ls /proc | grep -E '^[0-9]+$' | sort -n | head -1; echo $$")
    first_pid, shell_pid = out.split()
    assert first_pid == "1" and shell_pid == "1"


def test_own_namespaces(daemon: Daemon) -> None:
    kinds = (*PRIVATE_NAMESPACES, "user")
    out = sh_out(daemon, [], "; ".join(f"readlink /proc/1/ns/{k}" for k in kinds))
    inside = dict(zip(kinds, out.split(), strict=True))
    for kind in PRIVATE_NAMESPACES:
        host = os.readlink(f"/proc/self/ns/{kind}")
        assert inside[kind].startswith(f"{kind}:[") and inside[kind] != host, kind
    # As Docker without userns-remap: the host's user namespace.
    assert inside["user"] == os.readlink("/proc/self/ns/user")


@pytest.mark.parametrize(("flag", "kind"), [("--pid", "pid"), ("--ipc", "ipc"), ("--uts", "uts")])
def test_host_namespace_modes(daemon: Daemon, flag: str, kind: str) -> None:
    out = sh_out(daemon, [flag, "host"], f"readlink /proc/self/ns/{kind}")
    assert out.strip() == os.readlink(f"/proc/self/ns/{kind}")


def test_two_containers_do_not_share_namespaces(daemon: Daemon) -> None:
    # The first one keeps running: freed namespace inode numbers would be reused.
    with running(daemon, []) as cid:
        first = [ok(daemon, "exec", cid, "readlink", f"/proc/1/ns/{k}").strip() for k in PRIVATE_NAMESPACES]
        second = sh_out(daemon, [], "; ".join(f"readlink /proc/1/ns/{k}" for k in PRIVATE_NAMESPACES)).split()
    assert len(first) == len(second) == len(PRIVATE_NAMESPACES)
    assert all(a != b for a, b in zip(first, second, strict=True)), (first, second)


def test_hostname_defaults_to_short_id(daemon: Daemon) -> None:
    with named(daemon) as name:
        cid = ok(daemon, "create", "--name", name, "busybox", "hostname").strip()
        assert ok(daemon, "start", "-a", name) == f"{cid[:12]}\n"


def test_writes_to_root_stay_in_the_containers_layer(daemon: Daemon) -> None:
    marker = f"/skiff-marker-{secrets.token_hex(4)}"
    script = f"cat {marker} 2>/dev/null || echo absent; echo mine > {marker}; echo changed >> /etc/passwd"
    with named(daemon) as first, named(daemon) as second:
        assert ok(daemon, "run", "--name", first, "busybox", "sh", "-c", script) == "absent\n"
        # The same container again: its own layer kept the file.
        assert ok(daemon, "start", "-a", first) == "mine\n"
        # A second container from the same image sees the image untouched.
        check = f"cat {marker} 2>/dev/null || echo absent; grep -c changed /etc/passwd || true"
        assert ok(daemon, "run", "--name", second, "busybox", "sh", "-c", check) == "absent\n0\n"


MASKED_FILES = ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats")


def test_masked_proc_files_read_empty(daemon: Daemon) -> None:
    present = [p for p in MASKED_FILES if os.path.exists(p)]
    if not present:
        pytest.skip(f"none of {MASKED_FILES} exists on this kernel")
    # /proc/keys is never empty on the host (it lists at least the session keyring).
    out = sh_out(daemon, [], "; ".join(f"wc -c < {p}" for p in present))
    assert out.split() == ["0"] * len(present), dict(zip(present, out.split(), strict=False))


def test_proc_kcore_is_masked(daemon: Daemon) -> None:
    if not os.path.exists("/proc/kcore"):
        pytest.skip("this kernel has no /proc/kcore (CONFIG_PROC_KCORE off)")
    assert sh_out(daemon, [], "wc -c < /proc/kcore").strip() == "0"


def test_sys_firmware_is_masked(daemon: Daemon) -> None:
    if not os.listdir("/sys/firmware"):
        pytest.skip("/sys/firmware is empty on this host")
    assert sh_out(daemon, [], "ls -A /sys/firmware | wc -l").strip() == "0"


def test_proc_sys_is_read_only(daemon: Daemon) -> None:
    # Writing the (UTS-namespaced) hostname back to itself: harmless if it were allowed.
    script = (
        "{ cat /proc/sys/kernel/hostname > /proc/sys/kernel/hostname && echo wrote; } 2>&1;"
        " grep ' /proc/sys ' /proc/mounts | cut -d' ' -f4"
    )
    out = sh_out(daemon, [], script)
    assert "Read-only file system" in out and "wrote" not in out
    assert out.splitlines()[-1].split(",")[0] == "ro"


def test_sys_is_read_only(daemon: Daemon) -> None:
    out = sh_out(daemon, [], "grep '^sysfs /sys ' /proc/mounts | cut -d' ' -f4")
    assert out.split(",")[0] == "ro"


def test_default_capabilities_equal_dockers(daemon: Daemon) -> None:
    status = sh_out(daemon, [], "cat /proc/self/status")
    for field in ("CapEff", "CapPrm", "CapBnd"):
        assert int(status_field(status, field), 16) == DOCKER_DEFAULT_CAPS, field
    assert int(status_field(status, "CapInh"), 16) == 0
    assert int(status_field(status, "CapAmb"), 16) == 0


def test_non_root_user_has_no_effective_capabilities(daemon: Daemon) -> None:
    status = sh_out(daemon, ["-u", "1000"], "cat /proc/self/status")
    assert int(status_field(status, "CapEff"), 16) == 0
    assert int(status_field(status, "CapBnd"), 16) == DOCKER_DEFAULT_CAPS


def test_default_dev_has_only_the_standard_nodes(daemon: Daemon) -> None:
    out = sh_out(daemon, [], "ls /dev")
    names = set(out.split())
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm"} <= names
    assert not {n for n in names if n.startswith(("sd", "vd", "nvme", "loop", "mem", "kmsg"))}


def test_mknod_of_a_disallowed_device_is_denied(daemon: Daemon) -> None:
    # CAP_MKNOD is in the default set; the devices cgroup still refuses use of /dev/mem (1:1).
    out = sh_out(
        daemon, [], "mknod /tmp/mem c 1 1 && head -c 1 /tmp/mem >/dev/null 2>&1 && echo read || echo denied"
    )
    assert out.strip().splitlines()[-1] == "denied"
