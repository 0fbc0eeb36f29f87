"""The local driver's rules (names, options, mount flags) and its directories; filters (no root)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from skiff.errors import InvalidArgument
from skiff.fs.scoped import resolve_in_root
from skiff.types.volume import ANONYMOUS_LABEL, VolumeRecord
from skiff.volumes import local
from skiff.volumes.filters import LIST_FILTERS, PRUNE_FILTERS, check_filters, volume_matches


@pytest.mark.parametrize("name", ["ab", "db-data", "my_vol.1", "0", "A9"])
def test_valid_names(name: str) -> None:
    if len(name) == 1:
        with pytest.raises(InvalidArgument, match="too short"):
            local.validate_name(name)
    else:
        local.validate_name(name)


@pytest.mark.parametrize("name", ["-ab", ".ab", "a/b", "a b", "a:b", "/abs/path", "ü-x"])
def test_invalid_names_say_what_is_allowed(name: str) -> None:
    with pytest.raises(InvalidArgument, match=r"includes invalid characters.*use absolute path"):
        local.validate_name(name)


def test_options_follow_the_local_drivers_rules() -> None:
    local.validate_options({})
    local.validate_options({"type": "tmpfs", "device": "tmpfs", "o": "size=1m,uid=1000"})
    local.validate_options({"type": "none", "device": "/srv/data", "o": "bind"})
    with pytest.raises(InvalidArgument, match='invalid option: "colour"'):
        local.validate_options({"colour": "red"})
    with pytest.raises(InvalidArgument, match='missing required option: "device"'):
        local.validate_options({"type": "tmpfs"})
    with pytest.raises(InvalidArgument, match='missing required option: "type"'):
        local.validate_options({"o": "size=1m", "device": "tmpfs"})
    with pytest.raises(InvalidArgument, match="quota"):
        local.validate_options({"size": "1g"})
    with pytest.raises(InvalidArgument, match="absolute host path"):
        local.validate_options({"type": "none", "device": "relative", "o": "bind"})


def test_mount_options_split_into_flags_data_and_propagation() -> None:
    flags, data, propagation = local.parse_mount_options("ro,nosuid,size=1m,uid=1000,noatime,rshared")
    assert flags == local.MS_RDONLY | local.MS_NOSUID | local.MS_NOATIME
    assert data == ["size=1m", "uid=1000"]
    assert propagation == local.MS_SHARED | local.MS_REC
    flags, _, _ = local.parse_mount_options("ro,rw,rbind")
    assert flags == local.MS_BIND | local.MS_REC  # rw clears ro
    assert local.needs_mount({"type": "tmpfs", "device": "tmpfs"})
    assert not local.needs_mount({}) and not local.needs_mount(None)


def test_driver_directories_retire_and_purge(tmp_path: Path) -> None:
    driver = local.LocalDriver(tmp_path / "volumes")
    assert (tmp_path / "volumes").stat().st_mode & 0o777 == 0o701
    driver.create("data")
    assert driver.data("data").is_dir()
    (driver.data("data") / "f").write_bytes(b"x" * 100)
    os.link(driver.data("data") / "f", driver.data("data") / "hard")
    (driver.data("data") / "sub").mkdir()
    (driver.data("data") / "sub" / "g").write_bytes(b"y" * 20)
    assert driver.size("data") == 120  # the hard link counts once
    assert not driver.is_mounted("data")

    trash = driver.retire("data")
    assert trash is not None and trash.name.startswith(".trash-data-")
    assert not driver.path("data").exists()  # the name is free at once
    driver.create("data")
    assert list(driver.data("data").iterdir()) == []
    driver.purge(trash)
    assert not trash.exists()
    assert driver.retire("never-made") is None


def test_leftovers_are_directories_without_records_and_old_trash(tmp_path: Path) -> None:
    driver = local.LocalDriver(tmp_path / "volumes")
    for name in ("kept", "orphan"):
        driver.create(name)
    (tmp_path / "volumes" / ".trash-gone-1234").mkdir()
    found = driver.leftovers(["kept"])
    assert sorted(p.name.split("-")[0] for p in found) == [".trash", ".trash"]
    assert driver.path("kept").is_dir() and not driver.path("orphan").exists()
    for path in found:
        driver.purge(path)
    assert sorted(os.listdir(tmp_path / "volumes")) == ["kept"]


def test_resolve_in_root_never_leaves_the_root(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "real" / "dir").mkdir(parents=True)
    (root / "abs").symlink_to("/real")
    (root / "escape").symlink_to("../../../../etc")
    (root / "loop").symlink_to("loop")
    assert resolve_in_root(root, "/abs/dir") == root / "real" / "dir"
    assert resolve_in_root(root, "/escape/passwd") == root / "etc" / "passwd"
    assert resolve_in_root(root, "/../../real/./dir/..") == root / "real"
    assert resolve_in_root(root, "/missing/x") == root / "missing" / "x"
    with pytest.raises(InvalidArgument, match="too many levels"):
        resolve_in_root(root, "/loop")


def _vol(name: str, labels: dict[str, str] | None = None, driver: str = "local") -> VolumeRecord:
    return VolumeRecord(name=name, driver=driver, labels=labels)


def test_list_filters() -> None:
    web = _vol("web-data", {"app": "web", "tier": "front"})
    anon = _vol("f" * 64, {ANONYMOUS_LABEL: ""})
    assert anon.anonymous and not web.anonymous
    assert volume_matches(web, True, {"dangling": ["false"]})
    assert not volume_matches(web, True, {"dangling": ["true"]})
    assert volume_matches(anon, False, {"dangling": ["1"]})
    assert volume_matches(web, False, {"name": ["^web"], "driver": ["local"]})
    assert not volume_matches(web, False, {"name": ["db", "cache"]})
    assert not volume_matches(web, False, {"driver": ["nfs"]})
    assert volume_matches(web, False, {"label": ["app", "tier=front"]})
    assert not volume_matches(web, False, {"label": ["app=db"]})
    assert not volume_matches(web, False, {"label": ["app", "missing"]})
    assert volume_matches(web, False, {"label!": ["app=db"]})
    assert not volume_matches(web, False, {"label!": ["tier"]})


def test_filter_keys_and_booleans_are_checked() -> None:
    check_filters({"dangling": ["true"], "name": ["x"]}, LIST_FILTERS)
    check_filters({"all": ["1"], "label": ["a"]}, PRUNE_FILTERS)
    with pytest.raises(InvalidArgument, match="invalid filter 'until'"):
        check_filters({"until": ["24h"]}, PRUNE_FILTERS)
    with pytest.raises(InvalidArgument, match="invalid filter 'dangling=maybe'"):
        check_filters({"dangling": ["maybe"]}, LIST_FILTERS)
    with pytest.raises(InvalidArgument, match="invalid filter 'scope'"):
        check_filters({"scope": ["local"]}, LIST_FILTERS)
