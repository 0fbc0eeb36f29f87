"""Volumes in the API and CLI layers: /volumes routes over a real VolumeService (plain directories,
no root), create-body conversion of Mounts and VolumesFrom, Mounts in inspect/ps, the ps volume
filter, and the CLI's --mount/--volumes-from parsing and volume rows."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from skiff.api.app import create_app
from skiff.api.convert import spec_from_create
from skiff.api.filters import container_matches
from skiff.api.render import container_inspect, container_summary
from skiff.cli.options.values import parse_mount
from skiff.cli.volumes import VolumeRow
from skiff.engine.events import EventBus
from skiff.engine.model import Container
from skiff.engine.volumes import VolumeService
from skiff.errors import InvalidArgument
from skiff.store.metadata import MetadataDB
from skiff.types import ContainerSpec, HostConfig
from skiff.types.volume import ANONYMOUS_LABEL, MountPoint


class FakeEngine:
    def __init__(self, root: Path) -> None:
        self.db = MetadataDB(root / "metadata.db")
        self.volumes = VolumeService(root=root, db=self.db, events=EventBus(self.db))


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    e = FakeEngine(tmp_path)
    yield e
    e.db.close()


def _call(engine: FakeEngine, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async def go() -> tuple[int, Any]:
        async with TestClient(TestServer(create_app(engine))) as client:  # type: ignore[arg-type]
            resp = await client.request(method, path, **kwargs)
            body = await resp.read()
            return resp.status, json.loads(body) if body else None

    return asyncio.run(go())


def test_create_inspect_list_remove(engine: FakeEngine) -> None:
    status, body = _call(
        engine,
        "POST",
        "/v1.41/volumes/create",
        json={"Name": "data", "Driver": "local", "DriverOpts": {}, "Labels": {"app": "web"}},
    )
    assert status == 201
    assert set(body) == {"CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"}
    assert (body["Name"], body["Driver"], body["Scope"], body["Labels"], body["Options"]) == (
        "data",
        "local",
        "local",
        {"app": "web"},
        {},
    )
    assert body["Mountpoint"].endswith("/volumes/data/_data")
    status, body = _call(engine, "GET", "/volumes/data")
    assert status == 200 and body["Name"] == "data"
    status, body = _call(engine, "POST", "/volumes/create", json={})
    assert status == 201 and body["Labels"] == {ANONYMOUS_LABEL: ""} and body["Options"] is None

    status, body = _call(engine, "GET", "/volumes")
    assert status == 200 and body["Warnings"] == []
    assert "data" in {v["Name"] for v in body["Volumes"]} and len(body["Volumes"]) == 2
    status, body = _call(engine, "GET", "/volumes", params={"filters": json.dumps({"label": ["app=web"]})})
    assert [v["Name"] for v in body["Volumes"]] == ["data"]
    status, body = _call(engine, "GET", "/volumes", params={"filters": json.dumps({"until": ["1h"]})})
    assert status == 400 and body["message"] == "invalid filter 'until'"

    status, body = _call(engine, "DELETE", "/v1.41/volumes/data")
    assert status == 204 and body is None
    status, body = _call(engine, "GET", "/volumes/data")
    assert status == 404 and body["message"] == "get data: no such volume"
    status, body = _call(engine, "DELETE", "/volumes/data")
    assert status == 404
    status, _ = _call(engine, "DELETE", "/volumes/data", params={"force": "1"})
    assert status == 204


def test_create_errors(engine: FakeEngine) -> None:
    status, body = _call(engine, "POST", "/volumes/create", json={"Name": "x"})
    assert status == 400 and "too short" in body["message"]
    status, body = _call(engine, "POST", "/volumes/create", json={"Name": "ok", "DriverOpts": {"o": "x"}})
    assert status == 400 and body["message"] == 'create ok: missing required option: "device"'
    status, body = _call(engine, "POST", "/volumes/create", json={"Name": "ok", "Labels": {"a": 1}})
    assert status == 400
    status, body = _call(engine, "POST", "/volumes/create", json={"Name": "ok", "Driver": "rexray"})
    assert status == 404


def test_in_use_is_409_with_the_container_ids(engine: FakeEngine) -> None:
    engine.volumes.resolve(
        "c" * 64, ContainerSpec(image="x", host=HostConfig(binds=("db:/db",))), lambda ref: ()
    )
    status, body = _call(engine, "DELETE", "/volumes/db", params={"force": "true"})
    assert status == 409 and body["message"] == f"remove db: volume is in use - [{'c' * 64}]"


def test_prune_default_follows_the_api_version(engine: FakeEngine) -> None:
    def make() -> str:
        engine.volumes.create("named")
        return engine.volumes.create().name

    anon = make()
    status, body = _call(engine, "POST", "/v1.43/volumes/prune")
    assert status == 400  # newer than skiffd serves
    status, body = _call(engine, "POST", "/volumes/prune", params={"filters": '{"all":["false"]}'})
    assert status == 200 and body == {"VolumesDeleted": [anon], "SpaceReclaimed": 0}
    anon = make()
    # API 1.41 clients (the docker CLI after negotiation, docker-py) get every unused volume.
    status, body = _call(engine, "POST", "/v1.41/volumes/prune")
    assert sorted(body["VolumesDeleted"]) == sorted([anon, "named"])
    status, body = _call(engine, "POST", "/volumes/prune", params={"filters": '{"all":["true"]}'})
    assert body == {"VolumesDeleted": None, "SpaceReclaimed": 0}
    status, body = _call(engine, "POST", "/volumes/prune", params={"filters": '{"dangling":["true"]}'})
    assert status == 400


def test_create_body_mounts_and_volumes_from() -> None:
    spec = spec_from_create(
        {
            "Image": "busybox",
            "HostConfig": {
                "VolumesFrom": ["data:ro"],
                "Mounts": [
                    {
                        "Type": "volume",
                        "Source": "cache",
                        "Target": "/cache",
                        "VolumeOptions": {
                            "NoCopy": True,
                            "Labels": {"a": "b"},
                            "DriverConfig": {
                                "Name": "local",
                                "Options": {"type": "tmpfs", "device": "tmpfs"},
                            },
                        },
                    },
                    {
                        "Type": "bind",
                        "Source": "/srv",
                        "Target": "/srv",
                        "BindOptions": {"Propagation": "rslave"},
                    },
                    {"Type": "tmpfs", "Target": "/run", "TmpfsOptions": {"SizeBytes": 65536, "Mode": 0o1777}},
                    {"Type": "tmpfs", "Target": "/big", "TmpfsOptions": {"SizeBytes": 3 << 30}},
                ],
            },
        }
    )
    host = spec.host
    assert host.volumes_from == ("data:ro",)
    volume, bind, tmpfs, big = host.mounts
    assert volume.options == ("nocopy",) and volume.volume_driver == "local"
    assert volume.volume_options == {"type": "tmpfs", "device": "tmpfs"} and volume.volume_labels == {
        "a": "b"
    }
    assert bind.options == ("rslave",)
    assert tmpfs.options == ("size=64k", "mode=1777")
    assert big.options == ("size=3g",)
    with pytest.raises(InvalidArgument):
        spec_from_create({"Image": "b", "HostConfig": {"Mounts": [{"Type": "tmpfs", "TmpfsOptions": []}]}})


def _container(points: tuple[MountPoint, ...], host: HostConfig | None = None) -> Container:
    spec = ContainerSpec(image="busybox", host=host or HostConfig())
    return Container(id="d" * 64, name="web", created="", image_id="", spec=spec, mount_points=points)


POINTS = (
    MountPoint(
        type="bind", destination="/srv", source="/srv/www", mode="ro", rw=False, propagation="rprivate"
    ),
    MountPoint(
        type="volume",
        destination="/var/lib/db",
        source="/var/lib/skiff/volumes/db/_data",
        name="db",
        driver="local",
        mode="z",
    ),
    MountPoint(type="tmpfs", destination="/scratch", tmpfs_options=("size=1m",)),
)


def test_mounts_in_inspect_and_ps_as_docker_shows_them() -> None:
    host = spec_from_create(
        {
            "Image": "b",
            "HostConfig": {
                "VolumesFrom": ["other"],
                "Mounts": [
                    {
                        "Type": "tmpfs",
                        "Target": "/scratch",
                        "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o700},
                    },
                    {"Type": "volume", "Source": "db", "Target": "/x", "VolumeOptions": {"NoCopy": True}},
                ],
            },
        }
    ).host
    c = _container(POINTS, host)
    inspect = container_inspect(c, "/var/lib/skiff")
    assert inspect["Mounts"] == [
        {
            "Type": "bind",
            "Source": "/srv/www",
            "Destination": "/srv",
            "Mode": "ro",
            "RW": False,
            "Propagation": "rprivate",
        },
        {
            "Type": "volume",
            "Name": "db",
            "Source": "/var/lib/skiff/volumes/db/_data",
            "Destination": "/var/lib/db",
            "Driver": "local",
            "Mode": "z",
            "RW": True,
            "Propagation": "",
        },
        {"Type": "tmpfs", "Source": "", "Destination": "/scratch", "Mode": "", "RW": True, "Propagation": ""},
    ]
    assert inspect["HostConfig"]["VolumesFrom"] == ["other"]
    tmpfs, volume = inspect["HostConfig"]["Mounts"]
    assert tmpfs["TmpfsOptions"] == {"SizeBytes": 1 << 20, "Mode": 0o700}
    assert volume["VolumeOptions"] == {"NoCopy": True}
    assert container_summary(c, 0.0)["Mounts"] == inspect["Mounts"]


def test_ps_volume_filter_matches_names_sources_and_destinations() -> None:
    c = _container(POINTS)
    assert container_matches(c, {"volume": ["db"]})
    assert container_matches(c, {"volume": ["/srv/www"]})
    assert container_matches(c, {"volume": ["/scratch"]})
    assert container_matches(c, {"volume": ["nope", "/var/lib/db"]})
    assert not container_matches(c, {"volume": ["other"]})
    assert not container_matches(_container(()), {"volume": ["db"]})


def test_cli_mount_flag_with_volume_options_in_csv() -> None:
    mount = parse_mount(
        "type=volume,src=cache,dst=/cache,volume-driver=local,volume-opt=type=tmpfs,"
        'volume-opt=device=tmpfs,"volume-opt=o=size=1m,uid=1000",volume-label=tier=fast,volume-nocopy'
    )
    assert mount == {
        "Type": "volume",
        "Source": "cache",
        "Target": "/cache",
        "VolumeOptions": {
            "DriverConfig": {
                "Name": "local",
                "Options": {"type": "tmpfs", "device": "tmpfs", "o": "size=1m,uid=1000"},
            },
            "Labels": {"tier": "fast"},
            "NoCopy": True,
        },
    }
    with pytest.raises(InvalidArgument, match="volume-opt"):
        parse_mount("type=volume,dst=/x,volume-opt=novalue")


def test_volume_row_fields() -> None:
    raw = {
        "Name": "db",
        "Driver": "local",
        "Scope": "local",
        "Mountpoint": "/m",
        "Labels": {"b": "2", "a": "1"},
    }
    row = VolumeRow(raw)
    assert (row.Labels, row.Label("b"), row.Links, row.Size, row.Status) == (
        "a=1,b=2",
        "2",
        "N/A",
        "N/A",
        "N/A",
    )
    used = VolumeRow({**raw, "UsageData": {"Size": 2000, "RefCount": 3}})
    assert (used.Links, used.Size) == ("3", "2kB")
    assert set(row.to_json()) == {
        "Availability",
        "Driver",
        "Group",
        "Labels",
        "Links",
        "Mountpoint",
        "Name",
        "Scope",
        "Size",
        "Status",
    }


def test_cli_volume_flag_makes_relative_host_paths_absolute(tmp_path: Path, monkeypatch: Any) -> None:
    from skiff.cli.options.values import parse_volume

    monkeypatch.chdir(tmp_path)
    assert parse_volume("./data:/data:ro") == (f"{tmp_path}/data:/data:ro", None)
    assert parse_volume("../up:/up") == (f"{tmp_path.parent}/up:/up", None)
    assert parse_volume("named:/data") == ("named:/data", None)
    assert parse_volume("/data") == (None, "/data")
