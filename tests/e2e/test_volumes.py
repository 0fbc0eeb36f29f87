"""Volumes end to end: the skiff CLI, the docker CLI and docker-py against skiffd.

Every container runs with ``--network none``; every volume, container and image a test makes is
removed at its end, even when it fails.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from skiff.store.mount import is_mountpoint
from tests.daemon_fixture import Daemon, bootstrap_busybox, running_daemon
from tests.e2e._skiff import ok, unique_name

DOCKER = "/usr/local/bin/docker"
NONE = ("--network", "none")


@contextlib.contextmanager
def cleanup(daemon: Daemon) -> Iterator[tuple[list[str], list[str]]]:
    """Yields (containers, volumes); whatever is named there is removed at the end."""
    containers: list[str] = []
    volumes: list[str] = []
    try:
        yield containers, volumes
    finally:
        for c in containers:
            daemon.skiff("rm", "-f", c)
        for v in volumes:
            daemon.skiff("volume", "rm", "-f", v)


def vol_name() -> str:
    return f"skiff-e2e-vol-{secrets.token_hex(4)}"


def volume_names(daemon: Daemon) -> set[str]:
    return set(ok(daemon, "volume", "ls", "-q").split())


def fails(daemon: Daemon, *args: str) -> str:
    r = daemon.skiff(*args)
    assert r.returncode != 0, f"skiff {' '.join(args)} succeeded: {r.stdout!r}"
    return r.stderr.decode()


def _image_tar() -> bytes:
    """busybox plus /data (uid 1000, 0750) holding /data/seed (uid 1000, 0640)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = Path("/bin/busybox").read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for applet in ("sh", "cat", "ls", "stat", "touch", "echo", "sleep", "grep", "true"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        folder = tarfile.TarInfo("data")
        folder.type, folder.mode, folder.uid, folder.gid = tarfile.DIRTYPE, 0o750, 1000, 1000
        tar.addfile(folder)
        seed = b"from the image\n"
        info = tarfile.TarInfo("data/seed")
        info.size, info.mode, info.uid, info.gid = len(seed), 0o640, 1000, 1000
        tar.addfile(info, io.BytesIO(seed))
    return buf.getvalue()


@pytest.fixture(scope="module")
def volume_image(daemon: Daemon) -> Iterator[str]:
    """An image with ``VOLUME /data`` and content in it."""
    image = f"skiff-e2e/volume:{unique_name('img')}"
    ok(daemon, "import", "-c", "VOLUME /data", "-c", 'CMD ["sh"]', "-", image, input=_image_tar())
    try:
        yield image
    finally:
        daemon.skiff("rmi", "-f", image)


# -- skiff CLI ---------------------------------------------------------------------------------


def test_named_volume_data_survives_container_removal(daemon: Daemon) -> None:
    with cleanup(daemon) as (containers, volumes):
        vol = vol_name()
        volumes.append(vol)
        assert ok(daemon, "volume", "create", "--label", "purpose=e2e", vol).strip() == vol
        (info,) = json.loads(ok(daemon, "volume", "inspect", vol))
        assert (info["Name"], info["Driver"], info["Scope"], info["Labels"]) == (
            vol,
            "local",
            "local",
            {"purpose": "e2e"},
        )
        assert info["Mountpoint"] == str(daemon.root / "volumes" / vol / "_data")
        writer = unique_name()
        containers.append(writer)
        ok(
            daemon,
            "run",
            "--name",
            writer,
            *NONE,
            "-v",
            f"{vol}:/data",
            "busybox",
            "sh",
            "-c",
            "echo kept > /data/f",
        )
        ok(daemon, "rm", writer)
        assert vol in volume_names(daemon)
        out = ok(daemon, "run", "--rm", *NONE, "-v", f"{vol}:/data", "busybox", "cat", "/data/f")
        assert out == "kept\n"
        assert (daemon.root / "volumes" / vol / "_data" / "f").read_text() == "kept\n"
        assert (
            ok(daemon, "volume", "ls", "-q", "--filter", "label=purpose=e2e", "--filter", f"name={vol}")
            == f"{vol}\n"
        )
        table = ok(daemon, "volume", "ls", "--filter", f"name={vol}").splitlines()
        assert table[0].split() == ["DRIVER", "VOLUME", "NAME"] and table[1].split() == ["local", vol]
        assert ok(daemon, "volume", "rm", vol).strip() == vol
        assert vol not in volume_names(daemon)
        assert not (daemon.root / "volumes" / vol).exists()


def test_a_volume_shared_by_two_containers_cannot_be_removed_while_used(daemon: Daemon) -> None:
    with cleanup(daemon) as (containers, volumes):
        vol = vol_name()
        volumes.append(vol)
        reader = unique_name()
        containers.append(reader)
        cid = ok(
            daemon, "run", "-d", "--name", reader, *NONE, "-v", f"{vol}:/shared", "busybox", "sleep", "300"
        )
        cid = cid.strip()
        ok(
            daemon,
            "run",
            "--rm",
            *NONE,
            "-v",
            f"{vol}:/data",
            "busybox",
            "sh",
            "-c",
            "echo hello > /data/msg",
        )
        assert ok(daemon, "exec", reader, "cat", "/shared/msg") == "hello\n"
        assert ok(daemon, "ps", "--filter", f"volume={vol}", "--format", "{{.Names}}").split() == [reader]
        assert ok(daemon, "ps", "--filter", "volume=/shared", "-q", "--no-trunc").split() == [cid]
        err = fails(daemon, "volume", "rm", "-f", vol)
        assert f"Error response from daemon: remove {vol}: volume is in use - [{cid}]" in err
        dangling = ok(daemon, "volume", "ls", "-q", "--filter", "dangling=true").split()
        assert vol not in dangling
        df = next(ln for ln in ok(daemon, "system", "df").splitlines() if ln.startswith("Local Volumes"))
        total, active = (int(x) for x in df.split()[2:4])
        assert total >= 1 and active >= 1
        ok(daemon, "stop", "-t", "0", reader)
        assert "volume is in use" in fails(daemon, "volume", "rm", vol)  # stopped still counts
        ok(daemon, "rm", reader)
        assert vol in ok(daemon, "volume", "ls", "-q", "--filter", "dangling=true").split()
        ok(daemon, "volume", "rm", vol)


def test_volumes_from_shares_named_and_anonymous_volumes_read_only(daemon: Daemon) -> None:
    with cleanup(daemon) as (containers, volumes):
        vol = vol_name()
        volumes.append(vol)
        source, reader = unique_name(), unique_name()
        containers += [source, reader]
        ok(
            daemon,
            "run",
            "--name",
            source,
            *NONE,
            "-v",
            "/anon",
            "-v",
            f"{vol}:/named",
            "busybox",
            "sh",
            "-c",
            "echo a > /anon/f; echo n > /named/f",
        )
        script = "cat /anon/f /named/f; touch /named/x 2>&1 || true"
        out = ok(
            daemon,
            "run",
            "--name",
            reader,
            *NONE,
            "--volumes-from",
            f"{source}:ro",
            "busybox",
            "sh",
            "-c",
            script,
        )
        assert out.splitlines()[:2] == ["a", "n"] and "Read-only file system" in out
        mine = json.loads(ok(daemon, "inspect", "-f", "{{json .Mounts}}", reader))
        theirs = json.loads(ok(daemon, "inspect", "-f", "{{json .Mounts}}", source))
        assert [(m["Destination"], m["Name"], m["RW"]) for m in mine] == [
            (m["Destination"], m["Name"], False) for m in theirs
        ]
        assert (
            ok(daemon, "inspect", "-f", "{{json .HostConfig.VolumesFrom}}", reader).strip()
            == f'["{source}:ro"]'
        )
        anon = next(m["Name"] for m in theirs if m["Destination"] == "/anon")
        ok(daemon, "rm", "-v", source)  # the reader still uses the anonymous volume: kept
        assert anon in volume_names(daemon)
        ok(daemon, "rm", "-v", reader)
        assert anon not in volume_names(daemon)
        assert vol in volume_names(daemon)  # named volumes survive rm -v
        assert "No such container: ghost" in fails(
            daemon, "run", "--rm", *NONE, "--volumes-from", "ghost", "busybox", "true"
        )


def test_image_volume_is_anonymous_populated_and_removed_by_rm_v_and_run_rm(
    daemon: Daemon, volume_image: str
) -> None:
    with cleanup(daemon) as (containers, volumes):
        before = volume_names(daemon)
        name = unique_name()
        containers.append(name)
        out = ok(
            daemon,
            "run",
            "--name",
            name,
            *NONE,
            volume_image,
            "sh",
            "-c",
            "stat -c '%u %a' /data /data/seed; cat /data/seed",
        )
        assert out == "1000 750\n1000 640\nfrom the image\n"
        (mount,) = json.loads(ok(daemon, "inspect", "-f", "{{json .Mounts}}", name))
        assert mount["Type"] == "volume" and mount["Destination"] == "/data" and len(mount["Name"]) == 64
        assert (mount["Driver"], mount["Mode"], mount["RW"]) == ("local", "", True)
        volumes.append(mount["Name"])
        labels = json.loads(ok(daemon, "volume", "inspect", "-f", "{{json .Labels}}", mount["Name"]))
        assert labels == {"com.docker.volume.anonymous": ""}
        ok(daemon, "rm", "-v", name)
        assert volume_names(daemon) == before

        # run --rm removes its anonymous volumes with the container.
        ok(daemon, "run", "--rm", *NONE, volume_image, "sh", "-c", "echo scratch > /data/new")
        assert volume_names(daemon) == before

        # Without -v the volume stays, dangling; prune (anonymous only by default) takes it.
        kept = unique_name()
        containers.append(kept)
        ok(daemon, "run", "--name", kept, *NONE, volume_image, "true")
        anon = json.loads(ok(daemon, "inspect", "-f", "{{json .Mounts}}", kept))[0]["Name"]
        volumes.append(anon)
        ok(daemon, "rm", kept)
        named = vol_name()
        volumes.append(named)
        ok(daemon, "volume", "create", named)
        pruned = ok(daemon, "volume", "prune", "-f")
        assert f"Deleted Volumes:\n{anon}\n" in pruned and named not in pruned
        assert pruned.rstrip().splitlines()[-1].startswith("Total reclaimed space: ")
        assert named in volume_names(daemon)


def test_named_volume_is_populated_only_when_new_and_not_with_nocopy(
    daemon: Daemon, volume_image: str
) -> None:
    with cleanup(daemon) as (_, volumes):
        fresh, nocopy = vol_name(), vol_name()
        volumes += [fresh, nocopy]
        out = ok(
            daemon,
            "run",
            "--rm",
            *NONE,
            "-v",
            f"{fresh}:/data",
            volume_image,
            "sh",
            "-c",
            "ls /data; echo mine > /data/seed",
        )
        assert out == "seed\n"
        out = ok(daemon, "run", "--rm", *NONE, "-v", f"{fresh}:/data", volume_image, "cat", "/data/seed")
        assert out == "mine\n"  # not copied again over the user's data
        mount = f"type=volume,src={nocopy},dst=/data,volume-nocopy"
        assert ok(daemon, "run", "--rm", *NONE, "--mount", mount, volume_image, "ls", "/data") == ""


def test_tmpfs_mounts_and_tmpfs_volumes(daemon: Daemon) -> None:
    with cleanup(daemon) as (containers, volumes):
        out = ok(
            daemon,
            "run",
            "--rm",
            *NONE,
            "--mount",
            "type=tmpfs,dst=/scratch,tmpfs-size=1m,tmpfs-mode=1770",
            "busybox",
            "sh",
            "-c",
            "grep ' /scratch ' /proc/mounts; stat -c %a /scratch",
        )
        line, mode = out.splitlines()
        assert line.split()[2] == "tmpfs" and "size=1024k" in line and "noexec" in line
        assert mode == "1770"

        vol = vol_name()
        volumes.append(vol)
        ok(daemon, "volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=2m", vol)
        (info,) = json.loads(ok(daemon, "volume", "inspect", vol))
        assert info["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=2m"}
        data = daemon.root / "volumes" / vol / "_data"
        assert not is_mountpoint(data)
        holder = unique_name()
        containers.append(holder)
        ok(daemon, "run", "-d", "--name", holder, *NONE, "-v", f"{vol}:/t", "busybox", "sleep", "300")
        assert is_mountpoint(data)
        out = ok(
            daemon,
            "run",
            "--rm",
            *NONE,
            "-v",
            f"{vol}:/t",
            "busybox",
            "sh",
            "-c",
            "echo x > /t/y; grep ' /t ' /proc/mounts",
        )
        assert "tmpfs" in out and "size=2048k" in out
        assert (data / "y").read_text() == "x\n"
        ok(daemon, "rm", "-f", holder)
        assert not is_mountpoint(data)  # the last user is gone: unmounted, as Docker's local driver


def test_bind_mounts_ro_and_rw(daemon: Daemon, tmp_path: Path) -> None:
    host = tmp_path / "skiff-e2e-bind"
    host.mkdir()
    (host / "file").write_text("host data\n")
    created = tmp_path / "skiff-e2e-made-by-v"
    script = "cat /ro/file; touch /ro/x 2>&1; echo w > /rw/written; echo c > /made/f"
    out = ok(
        daemon,
        "run",
        "--rm",
        *NONE,
        "-v",
        f"{host}:/ro:ro",
        "--mount",
        f"type=bind,src={host},dst=/rw",
        "-v",
        f"{created}:/made",
        "busybox",
        "sh",
        "-c",
        script,
    )
    assert out.splitlines()[0] == "host data" and "Read-only file system" in out
    assert (host / "written").read_text() == "w\n" and not (host / "x").exists()
    assert (created / "f").read_text() == "c\n"  # -v creates a missing host directory
    err = fails(
        daemon, "run", "--rm", *NONE, "--mount", f"type=bind,src={tmp_path}/missing,dst=/m", "busybox", "true"
    )
    assert "bind source path does not exist" in err
    err = fails(daemon, "run", "--rm", *NONE, "-v", "a:/x", "-v", "b:/x", "busybox", "true")
    assert "Duplicate mount point: /x" in err


# -- docker CLI --------------------------------------------------------------------------------


def docker_cli(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([DOCKER, *args], env=daemon.env(), capture_output=True, timeout=120)


@pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="needs the docker CLI")
def test_docker_cli_volume_commands(daemon: Daemon) -> None:
    with cleanup(daemon) as (containers, volumes):
        vol = vol_name()
        volumes.append(vol)
        r = docker_cli(daemon, "volume", "create", "--label", "by=docker", vol)
        assert r.returncode == 0 and r.stdout.decode().strip() == vol, r
        r = docker_cli(
            daemon, "volume", "ls", "--filter", f"name={vol}", "--format", "{{.Name}} {{.Driver}} {{.Labels}}"
        )
        assert r.stdout.decode().split() == [vol, "local", "by=docker"], r
        r = docker_cli(daemon, "volume", "inspect", "--format", "{{.Mountpoint}}", vol)
        assert r.stdout.decode().strip() == str(daemon.root / "volumes" / vol / "_data"), r
        name = unique_name()
        containers.append(name)
        r = docker_cli(
            daemon, "run", "-d", "--name", name, *NONE, "-v", f"{vol}:/data", "busybox", "sleep", "300"
        )
        assert r.returncode == 0, r
        cid = r.stdout.decode().strip()
        r = docker_cli(daemon, "exec", name, "sh", "-c", "echo via-docker > /data/f && cat /data/f")
        assert r.stdout == b"via-docker\n", r
        r = docker_cli(
            daemon,
            "inspect",
            "--format",
            "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.RW}}{{end}}",
            name,
        )
        assert r.stdout.decode().split() == ["volume", vol, "/data", "true"], r
        r = docker_cli(daemon, "volume", "rm", vol)
        assert r.returncode == 1, r
        assert (
            r.stderr.decode().strip()
            == f"Error response from daemon: remove {vol}: volume is in use - [{cid}]"
        )
        r = docker_cli(daemon, "volume", "inspect", "skiff-e2e-no-such-volume")
        assert r.returncode == 1 and b"no such volume" in r.stderr, r
        assert docker_cli(daemon, "rm", "-f", name).returncode == 0
        r = docker_cli(daemon, "volume", "rm", vol)
        assert r.returncode == 0 and r.stdout.decode().strip() == vol, r


@pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="needs the docker CLI")
def test_docker_cli_mount_flags(daemon: Daemon, tmp_path: Path) -> None:
    with cleanup(daemon) as (_, volumes):
        vol = vol_name()
        volumes.append(vol)
        host = tmp_path / "skiff-e2e-docker-bind"
        host.mkdir()
        (host / "in").write_text("hi\n")
        r = docker_cli(
            daemon,
            "run",
            "--rm",
            *NONE,
            "--mount",
            f"type=bind,source={host},target=/b,readonly",
            "--mount",
            f"type=volume,source={vol},target=/v,volume-label=made=by-mount",
            "--mount",
            "type=tmpfs,target=/t,tmpfs-size=65536",
            "busybox",
            "sh",
            "-c",
            "cat /b/in; touch /b/x 2>&1; echo v > /v/f; grep ' /t ' /proc/mounts",
        )
        out = r.stdout.decode()
        assert r.returncode == 0, r
        assert out.startswith("hi\n") and "Read-only file system" in out and "size=64k" in out
        labels = json.loads(ok(daemon, "volume", "inspect", "-f", "{{json .Labels}}", vol))
        assert labels == {"made": "by-mount"}


# -- docker-py ---------------------------------------------------------------------------------


def test_docker_py_volumes_api(daemon: Daemon, tmp_path: Path) -> None:
    api = daemon.client()
    vol = vol_name()
    cid = ""
    try:
        created = api.create_volume(name=vol, driver="local", labels={"k": "v"})
        assert created["Name"] == vol and created["Labels"] == {"k": "v"}
        listed = api.volumes(filters={"name": vol})
        assert [v["Name"] for v in listed["Volumes"]] == [vol]
        assert api.inspect_volume(vol)["Mountpoint"].endswith(f"/volumes/{vol}/_data")
        host_config = api.create_host_config(
            binds={str(tmp_path): {"bind": "/host", "mode": "ro"}, vol: {"bind": "/data", "mode": "rw"}},
            mounts=[docker.types.Mount("/scratch", None, type="tmpfs")],
            network_mode="none",
        )
        cid = api.create_container("busybox", ["sh", "-c", "echo py > /data/f"], host_config=host_config)[
            "Id"
        ]
        mounts = {m["Destination"]: m for m in api.inspect_container(cid)["Mounts"]}
        assert mounts["/host"] == {
            "Type": "bind",
            "Source": str(tmp_path),
            "Destination": "/host",
            "Mode": "ro",
            "RW": False,
            "Propagation": "rprivate",
        }
        assert (mounts["/data"]["Name"], mounts["/data"]["Mode"], mounts["/data"]["RW"]) == (vol, "rw", True)
        assert mounts["/scratch"]["Type"] == "tmpfs"
        api.start(cid)
        assert api.wait(cid)["StatusCode"] == 0
        with pytest.raises(docker.errors.APIError) as err:
            api.remove_volume(vol)
        assert err.value.status_code == 409
        api.remove_container(cid, v=True)
        cid = ""
        assert (daemon.root / "volumes" / vol / "_data" / "f").read_text() == "py\n"
        # docker-py speaks API 1.41: prune removes every unused volume, named ones too.
        pruned = api.prune_volumes(filters={"label": "k=v"})
        assert pruned["VolumesDeleted"] == [vol]
        with pytest.raises(docker.errors.NotFound):
            api.inspect_volume(vol)
    finally:
        if cid:
            api.remove_container(cid, force=True, v=True)
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_volume(vol, force=True)


# -- crash -------------------------------------------------------------------------------------


def test_kill9_keeps_volume_mounts_of_live_containers_and_drops_the_others() -> None:
    with running_daemon() as d:
        bootstrap_busybox(d)
        for vol in ("live", "gone"):
            ok(d, "volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=1m", vol)
        ok(d, "run", "-d", "--name", "keeper", *NONE, "-v", "live:/v", "busybox", "sleep", "300")
        ok(d, "run", "-d", "--name", "quitter", *NONE, "-v", "gone:/v", "busybox", "sh", "-c", "sleep 1.5")
        ok(d, "exec", "keeper", "sh", "-c", "echo still-here > /v/f")
        live, gone = (d.root / "volumes" / v / "_data" for v in ("live", "gone"))
        assert is_mountpoint(live) and is_mountpoint(gone)

        d.stop(signal.SIGKILL)
        time.sleep(2.5)  # the quitter exits while skiffd is down
        d.start()

        assert ok(d, "inspect", "-f", "{{.State.Status}}", "quitter").strip() == "exited"
        assert not is_mountpoint(gone)  # nobody uses it any more
        assert is_mountpoint(live) and (live / "f").read_text() == "still-here\n"
        assert ok(d, "exec", "keeper", "cat", "/v/f") == "still-here\n"
        assert "volume is in use" in fails(d, "volume", "rm", "live")
        assert sorted(volume_names(d)) == ["gone", "live"]
        # A new user of the unmounted volume gets it mounted afresh.
        out = ok(d, "run", "--rm", *NONE, "-v", "gone:/v", "busybox", "grep", " /v ", "/proc/mounts")
        assert "tmpfs" in out
        ok(d, "rm", "-f", "keeper", "quitter")
        assert not is_mountpoint(live)
        ok(d, "volume", "rm", "live", "gone")
