"""Privileged capabilities limited to the daemon's bounding set; --domainname via sysctl."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from skiff.runtime._caps import ALL_CAPABILITIES, bounding_set, effective_capabilities
from skiff.runtime.spec import generate_spec
from skiff.types import ContainerSpec, HostConfig


def test_privileged_gets_everything_without_a_bound() -> None:
    assert effective_capabilities((), (), True, bounding=None) == list(ALL_CAPABILITIES)


def test_privileged_is_limited_to_the_bounding_set() -> None:
    # A daemon without CAP_SYS_RESOURCE (24): runc could not grant it, so it is left out.
    mask = (1 << len(ALL_CAPABILITIES)) - 1 & ~(1 << 24)
    caps = effective_capabilities(("NET_ADMIN",), ("ALL",), True, bounding=mask)
    assert "CAP_SYS_RESOURCE" not in caps
    assert len(caps) == len(ALL_CAPABILITIES) - 1


def test_bounding_set_parses_status(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapBnd:\t000001fffeffffff\n")
    assert bounding_set(status) == 0x1FFFEFFFFFF
    assert bounding_set(tmp_path / "absent") is None


def test_bounding_does_not_touch_unprivileged_sets() -> None:
    assert effective_capabilities(("NET_ADMIN",), (), False, bounding=0)[-1] == "CAP_NET_ADMIN"


def _gen(**kw: Any) -> dict[str, Any]:
    spec_fields = {k: kw.pop(k) for k in list(kw) if k in ContainerSpec.__dataclass_fields__}
    spec = ContainerSpec(image="busybox", cmd=("sh",), host=replace(HostConfig(), **kw), **spec_fields)
    return generate_spec(
        spec, container_id="c1", rootfs="/r", hostname="h1", netns_path="/run/netns/x",
        cgroups_path="/skiff/c1", swap_supported=True,
    )  # fmt: skip


def test_domainname_is_set_through_the_uts_sysctl() -> None:
    s = _gen(domainname="example.test")
    assert s["domainname"] == "example.test"
    assert s["linux"]["sysctl"] == {"kernel.domainname": "example.test"}


def test_explicit_domainname_sysctl_wins_and_host_uts_is_left_alone() -> None:
    s = _gen(domainname="a.test", sysctls={"kernel.domainname": "b.test"})
    assert s["linux"]["sysctl"] == {"kernel.domainname": "b.test"}
    assert "sysctl" not in _gen(domainname="a.test", uts_mode="host")["linux"]


def test_no_domainname_no_sysctl() -> None:
    assert "sysctl" not in _gen()["linux"]


def test_host_uts_mode_sets_no_hostname() -> None:
    # runc: "unable to set hostname without a private UTS namespace".
    s = _gen(uts_mode="host")
    assert "hostname" not in s
    assert not any(n["type"] == "uts" for n in s["linux"]["namespaces"])
    assert _gen()["hostname"] == "h1"
