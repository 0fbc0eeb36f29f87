"""OCI spec generation: what dockerd would put in config.json."""

from __future__ import annotations

import os
import resource
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from skiff.errors import InvalidArgument
from skiff.runtime._caps import ALL_CAPABILITIES, bounding_set
from skiff.runtime.spec import (
    DEFAULT_MASKED_PATHS,
    DEFAULT_PATH,
    BindFile,
    generate_spec,
    resolve_groups,
    resolve_user,
)
from skiff.types import ContainerSpec, DeviceMapping, HostConfig, Mount, ThrottleDevice, Ulimit

DEFAULT_CAPS = {
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
}  # fmt: skip


def gen(cmd: tuple[str, ...] = ("sh",), netns: str | None = "/run/netns/x", **kw: Any) -> dict[str, Any]:
    spec_fields = {k: kw.pop(k) for k in list(kw) if k in ContainerSpec.__dataclass_fields__}
    spec = ContainerSpec(image="busybox", cmd=cmd, host=replace(HostConfig(), **kw), **spec_fields)
    return generate_spec(
        spec, container_id="c1", rootfs="/r", hostname="h1", netns_path=netns, cgroups_path="/skiff/c1",
        swap_supported=True,
    )  # fmt: skip


def caps(spec: dict[str, Any]) -> set[str]:
    c = spec["process"]["capabilities"]
    assert c["bounding"] == c["effective"] == c["permitted"]
    return set(c["effective"])


def test_process_defaults() -> None:
    s = gen(("echo", "hi"), entrypoint=("/init",), env=("A=1", "PATH=/x"), tty=True)
    p = s["process"]
    assert p["args"] == ["/init", "echo", "hi"]
    assert p["env"] == ["PATH=/x", "HOSTNAME=h1", "TERM=xterm", "A=1"]
    assert p["cwd"] == "/"
    assert p["terminal"] is True
    assert p["user"] == {"uid": 0, "gid": 0}
    assert p["noNewPrivileges"] is False
    assert s["hostname"] == "h1" and s["root"] == {"path": "/r", "readonly": False}
    assert s["linux"]["cgroupsPath"] == "/skiff/c1"


def test_path_default_and_no_term_without_tty() -> None:
    env = gen()["process"]["env"]
    assert env == [f"PATH={DEFAULT_PATH}", "HOSTNAME=h1"]


def test_no_command_is_an_error() -> None:
    with pytest.raises(InvalidArgument, match="no command"):
        gen(())


def test_default_capabilities() -> None:
    assert caps(gen()) == DEFAULT_CAPS


@pytest.mark.parametrize("name", ["NET_ADMIN", "net_admin", "CAP_NET_ADMIN", "cap_Net_Admin"])
def test_cap_add_spellings(name: str) -> None:
    assert caps(gen(cap_add=(name,))) == DEFAULT_CAPS | {"CAP_NET_ADMIN"}


def test_cap_drop() -> None:
    assert caps(gen(cap_drop=("chown", "CAP_KILL"))) == DEFAULT_CAPS - {"CAP_CHOWN", "CAP_KILL"}


def test_cap_drop_all_keeps_only_adds() -> None:
    assert caps(gen(cap_drop=("ALL",), cap_add=("NET_BIND_SERVICE",))) == {"CAP_NET_BIND_SERVICE"}


def test_cap_add_all_minus_drops() -> None:
    got = caps(gen(cap_add=("all",), cap_drop=("SYS_ADMIN",)))
    assert "CAP_SYS_ADMIN" not in got and "CAP_SYS_PTRACE" in got and len(got) == 40


def test_unknown_capability() -> None:
    with pytest.raises(InvalidArgument, match='unknown capability: "CAP_BOGUS"'):
        gen(cap_add=("bogus",))


def test_privileged() -> None:
    s = gen(privileged=True, cap_drop=("ALL",))
    # Every capability the daemon itself may hold (41 on an unrestricted host).
    host_mask = bounding_set()
    assert caps(s) == {c for i, c in enumerate(ALL_CAPABILITIES) if host_mask is None or host_mask >> i & 1}
    assert s["linux"]["maskedPaths"] == [] and s["linux"]["readonlyPaths"] == []
    assert s["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    sysfs = next(m for m in s["mounts"] if m["destination"] == "/sys")
    assert "ro" not in sysfs["options"]
    assert any(d["path"] == "/dev/null" for d in s["linux"]["devices"])


def test_masks_and_readonly_paths() -> None:
    linux = gen()["linux"]
    assert linux["maskedPaths"] == list(DEFAULT_MASKED_PATHS)
    assert "/proc/kcore" in linux["maskedPaths"] and "/sys/firmware" in linux["maskedPaths"]
    assert linux["readonlyPaths"] == [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]
    sysfs = next(m for m in gen()["mounts"] if m["destination"] == "/sys")
    assert "ro" in sysfs["options"]


def test_default_mounts_and_shm_size() -> None:
    mounts = {m["destination"]: m for m in gen(shm_size=128 * 1024 * 1024)["mounts"]}
    assert set(mounts) == {"/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm"}
    assert "size=134217728" in mounts["/dev/shm"]["options"]
    assert "size=65536k" in mounts["/dev"]["options"] and "mode=755" in mounts["/dev"]["options"]
    assert "newinstance" in mounts["/dev/pts"]["options"] and "gid=5" in mounts["/dev/pts"]["options"]
    assert f"size={64 * 1024 * 1024}" in {m["destination"]: m for m in gen()["mounts"]}["/dev/shm"]["options"]


def test_user_mounts_binds_tmpfs_and_bindfiles() -> None:
    s = gen(
        binds=("/host/data:/data:ro", "namedvol:/vol"),
        mounts=(Mount(type="tmpfs", source="", target="/dev/shm", options=("size=1m",)),),
        tmpfs={"/run": "size=10m,exec"},
    )
    spec = ContainerSpec(image="x", cmd=("sh",), host=HostConfig(binds=("/a:/data",)))
    s2 = generate_spec(
        spec, container_id="c", rootfs="/r", hostname="h", netns_path=None, cgroups_path="/c",
        extra_mounts=(BindFile("/var/lib/skiff/c/hosts", "/etc/hosts"), Mount("volume", "/v/_data", "/data")),
    )  # fmt: skip
    mounts = {m["destination"]: m for m in s["mounts"]}
    assert mounts["/data"] == {"destination": "/data", "type": "bind", "source": "/host/data",
                               "options": ["rbind", "rprivate", "ro"]}  # fmt: skip
    assert "/vol" not in mounts  # named volumes come resolved from the engine
    assert mounts["/dev/shm"]["type"] == "tmpfs" and "size=1m" in mounts["/dev/shm"]["options"]
    assert [m["destination"] for m in s["mounts"]].count("/dev/shm") == 1
    assert mounts["/run"]["options"] == ["nosuid", "nodev", "size=10m", "exec"]
    m2 = {m["destination"]: m for m in s2["mounts"]}
    assert m2["/etc/hosts"]["source"] == "/var/lib/skiff/c/hosts"
    assert m2["/data"]["source"] == "/v/_data"  # extra mount wins over the bind with the same target


def test_invalid_bind_mode() -> None:
    with pytest.raises(InvalidArgument, match="invalid mode"):
        gen(binds=("/a:/b:bogus",))


def test_readonly_rootfs_and_nnp() -> None:
    s = gen(readonly_rootfs=True, security_opt=("no-new-privileges",))
    assert s["root"]["readonly"] is True
    assert s["process"]["noNewPrivileges"] is True
    assert gen(security_opt=("no-new-privileges:true",))["process"]["noNewPrivileges"] is True
    assert gen(security_opt=("no-new-privileges=false",))["process"]["noNewPrivileges"] is False
    with pytest.raises(InvalidArgument):
        gen(security_opt=("no-new-privileges:maybe",))


def test_memory_math() -> None:
    mb = 1024 * 1024
    assert gen(memory=100 * mb)["linux"]["resources"]["memory"] == {"limit": 100 * mb, "swap": 200 * mb}
    assert gen(memory=100 * mb, memory_swap=-1)["linux"]["resources"]["memory"]["swap"] == -1
    assert gen(memory=100 * mb, memory_swap=150 * mb)["linux"]["resources"]["memory"]["swap"] == 150 * mb
    assert gen(memory_reservation=50 * mb)["linux"]["resources"]["memory"] == {"reservation": 50 * mb}
    with pytest.raises(InvalidArgument, match="Minimum memory limit allowed is 6MB"):
        gen(memory=1024)
    with pytest.raises(InvalidArgument, match="Memory limit when using Memoryswap"):
        gen(memory_swap=100 * mb)
    with pytest.raises(InvalidArgument, match="larger than memory limit"):
        gen(memory=100 * mb, memory_swap=50 * mb)


def test_cpu_math() -> None:
    cpu = gen(nano_cpus=1_500_000_000, cpu_shares=512, cpuset_cpus="0-1")["linux"]["resources"]["cpu"]
    assert cpu == {"period": 100000, "quota": 150000, "shares": 512, "cpus": "0-1"}
    assert gen(cpu_period=50000, cpu_quota=25000)["linux"]["resources"]["cpu"] == {
        "period": 50000,
        "quota": 25000,
    }
    with pytest.raises(InvalidArgument, match="Nano CPUs and CPU Period"):
        gen(nano_cpus=1_000_000_000, cpu_period=100000)


def test_pids_and_blkio() -> None:
    res = gen(pids_limit=100, blkio_weight=300)["linux"]["resources"]
    assert res["pids"] == {"limit": 100}
    assert res["blockIO"] == {"weight": 300}
    assert "pids" not in gen(pids_limit=-1)["linux"]["resources"]
    with pytest.raises(InvalidArgument, match="blkio weight"):
        gen(blkio_weight=5)


def test_blkio_throttle_needs_block_device(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="not a block device"):
        gen(blkio_device_read_bps=(ThrottleDevice("/dev/null", 1024),))
    block = next(
        (f"/dev/{d}" for d in ("sda", "vda", "nvme0n1", "loop0") if os.path.exists(f"/dev/{d}")), None
    )
    if block is not None:
        got = gen(blkio_device_write_iops=(ThrottleDevice(block, 10),))["linux"]["resources"]["blockIO"]
        st = os.stat(block)
        assert got["throttleWriteIOPSDevice"] == [{"major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                                                   "rate": 10}]  # fmt: skip


def test_device_rules_and_mapping() -> None:
    linux = gen(devices=(DeviceMapping("/dev/null", "/dev/mynull", "rw"),))["linux"]
    rules = linux["resources"]["devices"]
    assert rules[0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 136, "access": "rwm"} in rules
    assert rules[-1] == {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}
    assert linux["devices"][0]["path"] == "/dev/mynull" and linux["devices"][0]["type"] == "c"
    with pytest.raises(InvalidArgument, match="not a device node"):
        gen(devices=(DeviceMapping("/etc/passwd", "/dev/x"),))
    with pytest.raises(InvalidArgument, match="invalid device mode"):
        gen(devices=(DeviceMapping("/dev/null", "/dev/x", "rwx"),))


def test_ulimits() -> None:
    rl = gen(ulimits=(Ulimit("nproc", 10, 20),))["process"]["rlimits"]
    assert {"type": "RLIMIT_NPROC", "hard": 20, "soft": 10} in rl
    nofile = next(r for r in rl if r["type"] == "RLIMIT_NOFILE")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    expected = 1048576 if hard == resource.RLIM_INFINITY else min(1048576, hard)
    assert nofile["hard"] == nofile["soft"] == expected
    rl = gen(ulimits=(Ulimit("nofile", 100, 200),))["process"]["rlimits"]
    assert rl == [{"type": "RLIMIT_NOFILE", "hard": 200, "soft": 100}]
    with pytest.raises(InvalidArgument, match="invalid ulimit type"):
        gen(ulimits=(Ulimit("bogus", 1, 1),))
    with pytest.raises(InvalidArgument, match="soft limit"):
        gen(ulimits=(Ulimit("nofile", 10, 5),))


def test_namespaces() -> None:
    ns = {n["type"]: n for n in gen()["linux"]["namespaces"]}
    assert {"mount", "pid", "ipc", "uts", "network"} <= set(ns)
    assert ns["network"]["path"] == "/run/netns/x"
    host = {n["type"] for n in gen(network_mode="host")["linux"]["namespaces"]}
    assert "network" not in host and "uts" in host
    none = {n["type"]: n for n in gen(network_mode="none", netns=None)["linux"]["namespaces"]}
    assert none["network"] == {"type": "network"}
    shared = {
        n["type"] for n in gen(pid_mode="host", ipc_mode="host", uts_mode="host")["linux"]["namespaces"]
    }
    assert not shared & {"pid", "ipc", "uts"}


def test_sysctls_oom_score_and_init(tmp_path: Path) -> None:
    s = gen(sysctls={"net.ipv4.ip_forward": "1"}, oom_score_adj=500)
    assert s["linux"]["sysctl"] == {"net.ipv4.ip_forward": "1"}
    assert s["process"]["oomScoreAdj"] == 500
    with pytest.raises(InvalidArgument, match="not allowed"):
        gen(network_mode="host", sysctls={"net.ipv4.ip_forward": "1"})
    with pytest.raises(InvalidArgument, match="oom_score_adj"):
        gen(oom_score_adj=5000)
    spec = ContainerSpec(image="x", cmd=("sleep", "1"), host=HostConfig(init=True))
    s = generate_spec(spec, container_id="c", rootfs="/r", hostname="h", netns_path=None, cgroups_path="/c",
                      init_path="/usr/bin/tini-static")  # fmt: skip
    assert s["process"]["args"] == ["/sbin/docker-init", "--", "sleep", "1"]
    init = next(m for m in s["mounts"] if m["destination"] == "/sbin/docker-init")
    assert init["source"] == "/usr/bin/tini-static" and "ro" in init["options"]


@pytest.fixture
def fake_rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
    )
    (root / "etc/group").write_text(
        "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nwheel:x:10:app,bob\naudio:x:29:app\n"
    )
    return root


def test_resolve_user(fake_rootfs: Path) -> None:
    assert resolve_user(fake_rootfs, "") == (0, 0, [])
    assert resolve_user(fake_rootfs, "nobody") == (65534, 65534, [])
    assert resolve_user(fake_rootfs, "app") == (1000, 1000, [10, 29])
    assert resolve_user(fake_rootfs, "1000") == (1000, 1000, [10, 29])
    assert resolve_user(fake_rootfs, "4242") == (4242, 0, [])
    assert resolve_user(fake_rootfs, "app:wheel") == (1000, 10, [])
    assert resolve_user(fake_rootfs, "4242:4343") == (4242, 4343, [])
    with pytest.raises(
        InvalidArgument, match="unable to find user ghost: no matching entries in passwd file"
    ):
        resolve_user(fake_rootfs, "ghost")
    with pytest.raises(InvalidArgument, match="unable to find group ghosts"):
        resolve_user(fake_rootfs, "app:ghosts")
    assert resolve_groups(fake_rootfs, ["audio", "77"]) == [29, 77]


def test_resolve_user_never_leaves_rootfs(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "etc").mkdir(parents=True)
    (outside / "etc/passwd").write_text("evil:x:4444:4444::/:/bin/sh\n")
    root = tmp_path / "rootfs"
    root.mkdir()
    (root / "etc").symlink_to(str(outside / "etc"))  # absolute symlink: resolved inside rootfs
    with pytest.raises(InvalidArgument, match="unable to find user evil"):
        resolve_user(root, "evil")
    (root / "etc").unlink()
    (root / "etc").symlink_to("../../outside/etc")  # .. cannot climb above the rootfs either
    with pytest.raises(InvalidArgument, match="unable to find user evil"):
        resolve_user(root, "evil")
