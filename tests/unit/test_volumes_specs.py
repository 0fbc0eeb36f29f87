"""Docker's mount grammar: -v/Binds, --mount/Mounts, --volumes-from, image VOLUMEs (pure, no root)."""

from __future__ import annotations

from pathlib import Path

import pytest

from skiff.errors import InvalidArgument, NotFound
from skiff.types import HostConfig, Mount
from skiff.types.volume import MountPoint
from skiff.volumes.specs import (
    inherit,
    parse_bind,
    parse_mount,
    parse_volumes_from,
    plan_mounts,
    valid_mode,
)


def _no_containers(ref: str) -> tuple[MountPoint, ...]:
    raise NotFound(f"No such container: {ref}")


@pytest.mark.parametrize(
    ("mode", "ok"),
    [
        ("", True),
        ("ro", True),
        ("rw,z", True),
        ("ro,Z,rshared,nocopy", True),
        ("cached", True),
        ("ro,rw", False),  # two access modes
        ("z,Z", False),
        ("shared,slave", False),
        ("rx", False),
        ("ro,", False),
    ],
)
def test_valid_mode_allows_one_of_each_kind(mode: str, ok: bool) -> None:
    assert valid_mode(mode) is ok


def test_named_volume_bind_defaults_to_mode_z_and_copy_up() -> None:
    point = parse_bind("data:/var/lib/data/").point
    assert point == MountPoint(
        type="volume", destination="/var/lib/data", name="data", mode="z", rw=True, copy_data=True
    )


def test_named_volume_bind_read_only_nocopy() -> None:
    point = parse_bind("data:/d:ro,nocopy").point
    assert (point.type, point.mode, point.rw, point.copy_data) == ("volume", "ro,nocopy", False, False)


def test_host_path_bind_is_a_bind_with_rprivate_default_and_created_source() -> None:
    point = parse_bind("/srv//www/:/usr/share/html:ro").point
    assert point.type == "bind"
    assert point.source == "/srv/www"
    assert point.destination == "/usr/share/html"
    assert (point.rw, point.mode, point.propagation, point.create_source) == (False, "ro", "rprivate", True)
    assert parse_bind("/a:/b:rshared,z").point.propagation == "rshared"


def test_destination_only_bind_is_an_anonymous_volume() -> None:
    point = parse_bind("/cache").point
    assert point.type == "volume" and point.anonymous and point.name == ""


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "invalid volume specification"),
        ("a:b:c:d", "invalid volume specification"),
        ("/foo:rw", "invalid volume specification"),
        ("data::/x", "invalid volume specification"),
        ("data:relative", "must be absolute"),
        ("data:/", "destination can't be '/'"),
        ("data:/x:rx", "invalid mode: rx"),
        ("/host:/x:nocopy", "VolumeOptions must not be specified"),
        ("data:/x:rshared", "BindOptions must not be specified"),
    ],
)
def test_bad_binds_are_refused_with_dockers_words(raw: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_bind(raw)


def test_mount_volume_carries_driver_options_labels_and_nocopy() -> None:
    req = parse_mount(
        Mount(
            "volume",
            "cache",
            "/cache",
            read_only=True,
            options=("nocopy",),
            volume_options={"type": "tmpfs", "device": "tmpfs"},
            volume_labels={"tier": "fast"},
        )
    )
    assert req.point.name == "cache" and req.point.mode == "z"
    assert (req.point.rw, req.point.copy_data, req.point.anonymous) == (False, False, False)
    assert req.driver == "local"
    assert req.volume_options == {"type": "tmpfs", "device": "tmpfs"}
    assert req.volume_labels == {"tier": "fast"}


def test_mount_volume_without_source_is_anonymous() -> None:
    point = parse_mount(Mount("volume", "", "/data")).point
    assert point.anonymous and point.copy_data


def test_mount_bind_needs_an_existing_absolute_source(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="field Source must not be empty"):
        parse_mount(Mount("bind", "", "/x"))
    with pytest.raises(InvalidArgument, match="must be absolute"):
        parse_mount(Mount("bind", "rel", "/x"))
    with pytest.raises(InvalidArgument, match="bind source path does not exist"):
        parse_mount(Mount("bind", str(tmp_path / "missing"), "/x"))
    point = parse_mount(Mount("bind", str(tmp_path), "/x", options=("rslave",))).point
    assert (point.type, point.source, point.propagation, point.create_source) == (
        "bind",
        str(tmp_path),
        "rslave",
        False,
    )
    assert point.mode == ""


def test_mount_tmpfs_keeps_size_and_mode_and_refuses_a_source() -> None:
    point = parse_mount(Mount("tmpfs", "", "/run", options=("size=64k", "mode=1777"))).point
    assert point.type == "tmpfs" and point.tmpfs_options == ("size=64k", "mode=1777")
    with pytest.raises(InvalidArgument, match="Source must not be specified"):
        parse_mount(Mount("tmpfs", "x", "/run"))


def test_mount_volume_refuses_a_host_path_and_unknown_types() -> None:
    with pytest.raises(InvalidArgument, match="invalid volume name"):
        parse_mount(Mount("volume", "/host", "/x"))
    with pytest.raises(InvalidArgument, match='mount type unknown: "npipe"'):
        parse_mount(Mount("npipe", "", "/x"))


def test_volumes_from_spec() -> None:
    assert parse_volumes_from("data") == ("data", "rw")
    assert parse_volumes_from("data:ro") == ("data", "ro")
    for bad in ("data:rshared", "data:xx"):
        with pytest.raises(InvalidArgument, match="invalid mode"):
            parse_volumes_from(bad)
    with pytest.raises(InvalidArgument):
        parse_volumes_from("")


def test_inherit_is_read_only_if_either_side_says_so_and_never_copies() -> None:
    theirs = [
        MountPoint(type="volume", destination="/a", name="a", mode="z", copy_data=True),
        MountPoint(type="bind", destination="/b", source="/srv", rw=False, create_source=True),
    ]
    rw = inherit(theirs, "rw")
    assert [(p.rw, p.copy_data, p.mode, p.create_source) for p in rw] == [
        (True, False, "", False),
        (False, False, "", False),
    ]
    assert [p.rw for p in inherit(theirs, "ro")] == [False, False]


def test_plan_orders_by_destination_and_adds_anonymous_volumes_for_unmounted_paths() -> None:
    host = HostConfig(binds=("data:/data", "/srv:/srv:ro"), tmpfs={"/run": ""})
    planned = plan_mounts(host, ("/data", "/var/cache", "/run"), _no_containers)
    assert [(r.point.destination, r.point.type, r.point.anonymous) for r in planned] == [
        ("/data", "volume", False),  # the named volume wins over the image's VOLUME
        ("/srv", "bind", False),
        ("/var/cache", "volume", True),  # /run is a --tmpfs: no anonymous volume there
    ]


def test_plan_binds_and_mounts_replace_volumes_from_but_not_each_other() -> None:
    theirs = (MountPoint(type="volume", destination="/data", name="shared", driver="local"),)
    host = HostConfig(volumes_from=("other",), binds=("mine:/data",))
    planned = plan_mounts(host, (), lambda ref: theirs)
    assert [r.point.name for r in planned] == ["mine"]

    host = HostConfig(volumes_from=("other:ro",))
    (only,) = plan_mounts(host, ("/data",), lambda ref: theirs)
    assert (only.point.name, only.point.rw) == ("shared", False)

    for dup in (
        HostConfig(binds=("a:/x", "b:/x")),
        HostConfig(binds=("a:/x",), mounts=(Mount("volume", "b", "/x/"),)),
        HostConfig(binds=("a:/tmp",), tmpfs={"/tmp": ""}),
    ):
        with pytest.raises(InvalidArgument, match="Duplicate mount point"):
            plan_mounts(dup, (), _no_containers)


def test_plan_volumes_from_unknown_container_is_not_found() -> None:
    with pytest.raises(NotFound, match="No such container: ghost"):
        plan_mounts(HostConfig(volumes_from=("ghost",)), (), _no_containers)

    def reserved(ref: str) -> tuple[MountPoint, ...]:
        raise KeyError(ref)  # a name taken by a container still being created

    with pytest.raises(NotFound, match="No such container: half"):
        plan_mounts(HostConfig(volumes_from=("half",)), (), reserved)
