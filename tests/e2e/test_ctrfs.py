"""A container's files end to end: cp, diff, export and commit through the docker CLI, docker-py
and the skiff CLI against skiffd.

Every container runs with ``--network none``; containers, images and host files a test makes
are removed at its end, even when it fails.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import os
import pty
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.daemon_fixture import Daemon
from tests.e2e._skiff import ok, unique_name

DOCKER = "/usr/local/bin/docker"
NONE = ("--network", "none")


def dk(daemon: Daemon, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([DOCKER, *args], env=daemon.env(), input=input, capture_output=True, timeout=120)


def dk_ok(daemon: Daemon, *args: str, input: bytes | None = None) -> str:
    r = dk(daemon, *args, input=input)
    assert r.returncode == 0, f"docker {' '.join(args)} -> {r.returncode}\n{r.stdout!r}\n{r.stderr!r}"
    return r.stdout.decode()


def dk_fails(daemon: Daemon, *args: str) -> str:
    r = dk(daemon, *args)
    assert r.returncode != 0, f"docker {' '.join(args)} succeeded: {r.stdout!r}"
    return r.stderr.decode()


def stderr_on_a_tty(daemon: Daemon, *argv: str) -> str:
    """Run with stdout on a pty (docker cp prints its summary only then); returns stderr."""
    master, slave = pty.openpty()
    try:
        r = subprocess.run(argv, env=daemon.env(), stdout=slave, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(slave)
        os.close(master)
    assert r.returncode == 0, r.stderr
    return r.stderr.decode()


@contextlib.contextmanager
def cleanup(daemon: Daemon) -> Iterator[tuple[list[str], list[str]]]:
    """Yields (containers, images): whatever is named there is removed at the end."""
    containers: list[str] = []
    images: list[str] = []
    try:
        yield containers, images
    finally:
        for c in containers:
            daemon.skiff("rm", "-f", "-v", c)
        for i in images:
            daemon.skiff("rmi", "-f", i)


def _tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


# -- docker CLI --------------------------------------------------------------------------------


def test_docker_cp_both_ways_with_a_running_container(daemon: Daemon, tmp_path: Path) -> None:
    with cleanup(daemon) as (containers, _):
        name = unique_name()
        containers.append(name)
        dk_ok(daemon, "run", "-d", "--name", name, *NONE, "busybox", "sleep", "300")
        (tmp_path / "small.txt").write_text("abc\n")
        tree = tmp_path / "tree"
        (tree / "sub").mkdir(parents=True)
        (tree / "top.txt").write_text("top")
        (tree / "sub" / "deep.txt").write_text("deep")
        (tree / "link").symlink_to("top.txt")
        # Host -> container: a file into a directory, a directory under a new name.
        err = stderr_on_a_tty(daemon, DOCKER, "cp", str(tmp_path / "small.txt"), f"{name}:/tmp/")
        assert err == f"Successfully copied 2.05kB to {name}:/tmp/\n"
        dk_ok(daemon, "cp", str(tree), f"{name}:/copied")
        out = dk_ok(
            daemon, "exec", name, "sh", "-c", "cat /tmp/small.txt /copied/top.txt /copied/sub/deep.txt"
        )
        assert out == "abc\ntopdeep"
        assert dk_ok(daemon, "exec", name, "readlink", "/copied/link") == "top.txt\n"
        # Container -> host: a file, a directory's contents (/.), to stdout as a tar.
        err = stderr_on_a_tty(daemon, DOCKER, "cp", f"{name}:/tmp/small.txt", str(tmp_path / "back.txt"))
        assert err == f"Successfully copied 2.05kB to {tmp_path / 'back.txt'}\n"
        assert (tmp_path / "back.txt").read_text() == "abc\n"
        (tmp_path / "contents").mkdir()
        dk_ok(daemon, "cp", f"{name}:/copied/.", str(tmp_path / "contents"))
        assert sorted(p.name for p in (tmp_path / "contents").iterdir()) == ["link", "sub", "top.txt"]
        raw = dk(daemon, "cp", f"{name}:/copied/sub", "-").stdout
        with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
            assert sorted(tf.getnames()) == ["sub", "sub/deep.txt"]
        # A tar on stdin, extracted into a directory.
        dk_ok(daemon, "cp", "-", f"{name}:/tmp", input=_tar_of({"from-stdin.txt": b"stdin"}))
        assert dk_ok(daemon, "exec", name, "cat", "/tmp/from-stdin.txt") == "stdin"


def test_docker_cp_follows_symlinks_inside_the_container(daemon: Daemon, tmp_path: Path) -> None:
    with cleanup(daemon) as (containers, _):
        name = unique_name()
        containers.append(name)
        script = "mkdir /real && echo in-real > /real/f && ln -s /real /abs && ln -s ../../../../etc /up && sleep 300"
        dk_ok(daemon, "run", "-d", "--name", name, *NONE, "busybox", "sh", "-c", script)
        dk_ok(daemon, "exec", name, "test", "-e", "/up")
        # Copying into a symlink to a directory writes the directory it names in the container.
        (tmp_path / "new.txt").write_text("new")
        dk_ok(daemon, "cp", str(tmp_path / "new.txt"), f"{name}:/abs")
        assert dk_ok(daemon, "exec", name, "cat", "/real/new.txt") == "new"
        # .. and absolute links resolve inside the container, never on the host.
        dk_ok(daemon, "cp", f"{name}:/up/hostname", str(tmp_path / "hostname"))
        hostname = daemon.client().inspect_container(name)["Config"]["Hostname"]
        assert (tmp_path / "hostname").read_text() == hostname + "\n"  # the container's, not the host's
        dk_ok(daemon, "cp", "-L", f"{name}:/abs", str(tmp_path / "followed"))
        assert (tmp_path / "followed" / "f").read_text() == "in-real\n"
        dk_ok(daemon, "cp", f"{name}:/abs", str(tmp_path / "as-link"))
        assert os.readlink(tmp_path / "as-link") == "/real"


def test_docker_cp_with_a_stopped_container_and_its_volume(daemon: Daemon, tmp_path: Path) -> None:
    with cleanup(daemon) as (containers, _):
        name = unique_name()
        containers.append(name)
        dk_ok(
            daemon,
            "create",
            "--name",
            name,
            *NONE,
            "-v",
            "/vol1",
            "busybox",
            "cat",
            "/vol1/in.txt",
            "/etc/in-root",
        )
        (tmp_path / "in.txt").write_text("into the volume\n")
        (tmp_path / "in-root").write_text("into the root\n")
        # The container never ran: /vol1 exists only as its anonymous volume.
        dk_ok(daemon, "cp", str(tmp_path / "in.txt"), f"{name}:/vol1/")
        dk_ok(daemon, "cp", str(tmp_path / "in-root"), f"{name}:/etc/")
        (point,) = daemon.client().inspect_container(name)["Mounts"]
        assert (Path(point["Source"]) / "in.txt").read_text() == "into the volume\n"
        assert dk_ok(daemon, "start", "-a", name) == "into the volume\ninto the root\n"
        # Exited now: read back from the volume and from the root filesystem.
        dk_ok(daemon, "cp", f"{name}:/vol1/in.txt", str(tmp_path / "out.txt"))
        assert (tmp_path / "out.txt").read_text() == "into the volume\n"
        dk_ok(daemon, "cp", f"{name}:/etc/in-root", str(tmp_path / "out-root"))
        assert (tmp_path / "out-root").read_text() == "into the root\n"
        # Nothing stays mounted after a copy from a stopped container (the diff waits for the
        # container's lock, which a copy holds until it has unmounted).
        daemon.client().diff(name)
        with open("/proc/self/mountinfo") as f:
            cid = daemon.client().inspect_container(name)["Id"]
            assert not [line for line in f if cid in line]


def test_docker_cp_owners_with_and_without_archive_mode(daemon: Daemon, tmp_path: Path) -> None:
    with cleanup(daemon) as (containers, _):
        name = unique_name()
        containers.append(name)
        dk_ok(daemon, "run", "-d", "--name", name, "-u", "1234:5678", *NONE, "busybox", "sleep", "300")
        f = tmp_path / "owned"
        f.write_text("x")
        os.chown(f, 4321, 4321)
        dk_ok(daemon, "cp", str(f), f"{name}:/tmp/kept")  # the archive's owner, as dockerd
        dk_ok(daemon, "cp", "-a", str(f), f"{name}:/tmp/mapped")  # the container's user
        out = dk_ok(daemon, "exec", name, "stat", "-c", "%u:%g", "/tmp/kept", "/tmp/mapped")
        assert out.split() == ["4321:4321", "1234:5678"]


def test_docker_cp_errors(daemon: Daemon, tmp_path: Path) -> None:
    with cleanup(daemon) as (containers, _):
        name, ro = unique_name(), unique_name()
        containers += [name, ro]
        dk_ok(daemon, "run", "-d", "--name", name, *NONE, "busybox", "sleep", "300")
        dk_ok(
            daemon,
            "run",
            "-d",
            "--read-only",
            "-v",
            "/writable",
            "--name",
            ro,
            *NONE,
            "busybox",
            "sleep",
            "300",
        )
        (tmp_path / "f").write_text("f")
        err = dk_fails(daemon, "cp", f"{name}:/nope", str(tmp_path / "x"))
        assert f"Error response from daemon: Could not find the file /nope in container {name}" in err
        err = dk_fails(daemon, "cp", str(tmp_path / "f"), f"{name}:/etc/passwd/x")
        assert "extraction point is not a directory" in err
        err = dk_fails(daemon, "cp", str(tmp_path / "f"), f"{ro}:/tmp/")
        assert "Error response from daemon: container rootfs is marked read-only" in err
        dk_ok(daemon, "cp", str(tmp_path / "f"), f"{ro}:/writable/")  # its volume stays writable
        err = dk_fails(daemon, "cp", "no-such-container-xyz:/etc/passwd", str(tmp_path / "y"))
        assert "No such container: no-such-container-xyz" in err


def test_docker_diff_export_and_commit(daemon: Daemon, tmp_path: Path) -> None:
    with cleanup(daemon) as (containers, images):
        name = unique_name()
        containers.append(name)
        image = f"skiff-e2e/committed:{unique_name('t')}"
        images.append(image)
        script = "echo hello > /hello && rm /bin/vi && mkdir -p /data/x && touch /data/x/f"
        dk_ok(daemon, "run", "--name", name, *NONE, "busybox", "sh", "-c", script)
        diff = dk_ok(daemon, "diff", name).splitlines()
        assert diff == ["C /bin", "D /bin/vi", "A /data", "A /data/x", "A /data/x/f", "A /hello"]
        export = subprocess.run(
            f"{DOCKER} export {name} | tar t", shell=True, env=daemon.env(), capture_output=True, check=True
        )
        names = export.stdout.decode().splitlines()
        assert "hello" in names and "bin/sh" in names and "data/x/f" in names
        assert "bin/vi" not in names
        image_id = dk_ok(
            daemon, "commit", "-m", "a message", "-a", "someone", "-c", 'CMD ["cat", "/hello"]', name, image
        ).strip()
        assert image_id.startswith("sha256:")
        assert dk_ok(daemon, "run", "--rm", *NONE, image) == "hello\n"
        info = daemon.client().inspect_image(image)
        assert (info["Comment"], info["Author"], info["Config"]["Cmd"]) == (
            "a message",
            "someone",
            ["cat", "/hello"],
        )
        assert info["Parent"] == daemon.client().inspect_image("busybox")["Id"]
        history = dk_ok(daemon, "history", "--no-trunc", "--format", "{{.Comment}}", image).splitlines()
        assert history[0] == "a message"
        # The new image has the changes and none of the runtime's mount targets.
        out = dk_ok(
            daemon, "run", "--rm", *NONE, image, "sh", "-c", "ls /data/x; test -e /bin/vi || echo no-vi"
        )
        assert out == "f\nno-vi\n"


def test_commit_of_a_running_container_pauses_it(daemon: Daemon) -> None:
    with cleanup(daemon) as (containers, images):
        name = unique_name()
        containers.append(name)
        dk_ok(daemon, "run", "-d", "--name", name, *NONE, "busybox", "sh", "-c", "echo x > /x; sleep 300")
        dk_ok(daemon, "exec", name, "test", "-e", "/x")
        api = daemon.client()
        since = int(time.time())
        image_id = dk_ok(daemon, "commit", name).strip()
        images.append(image_id)
        assert api.inspect_container(name)["State"]["Status"] == "running"
        cid = api.inspect_container(name)["Id"]
        events = api.events(since=since, until=int(time.time()) + 1, decode=True, filters={"container": cid})
        actions = [e["Action"] for e in events]
        assert actions[-3:] == ["pause", "commit", "unpause"]
        assert dk_ok(daemon, "run", "--rm", *NONE, image_id, "cat", "/x") == "x\n"
        # Unchanged container: an empty layer, the same layers as busybox.
        other = unique_name()
        containers.append(other)
        dk_ok(daemon, "create", "--name", other, *NONE, "busybox", "true")
        empty = dk_ok(daemon, "commit", "--pause=false", other).strip()
        images.append(empty)
        assert (
            api.inspect_image(empty)["RootFS"]["Layers"] == api.inspect_image("busybox")["RootFS"]["Layers"]
        )


# -- docker-py ---------------------------------------------------------------------------------


def test_docker_py_archive_api(daemon: Daemon) -> None:
    """docker-py's ArchiveTest, against skiffd."""
    api = daemon.client()
    with cleanup(daemon) as (containers, _):
        data = "The Maid and the Pocket Watch of Blood"
        c = api.create_container("busybox", f'sh -c "echo -n {data} > /vol1/data.txt"', volumes=["/vol1"])
        containers.append(c["Id"])
        api.start(c)
        api.wait(c)
        strm, st = api.get_archive(c, "/vol1/data.txt")
        assert st["name"] == "data.txt" and st["size"] == len(data)
        with tarfile.open(fileobj=io.BytesIO(b"".join(strm))) as tf:
            member = tf.extractfile("data.txt")
            assert member is not None and member.read().decode() == data
        # put_archive into a created container's volume, then read it from the container.
        c2 = api.create_container("busybox", "cat /vol1/hello.txt", volumes=["/vol1"])
        containers.append(c2["Id"])
        assert api.put_archive(c2, "/vol1", _tar_of({"hello.txt": b"Deaf To All But The Song"}))
        api.start(c2)
        api.wait(c2)
        assert api.logs(c2).strip() == b"Deaf To All But The Song"
        # Compressed bodies are accepted too (gzip, bzip2, xz).
        plain = _tar_of({"z.txt": b"compressed"})
        for compress in (gzip.compress, bz2.compress, lzma.compress):
            assert api.put_archive(c2, "/", compress(plain))
        strm, _ = api.get_archive(c2, "/z.txt")
        with tarfile.open(fileobj=io.BytesIO(b"".join(strm))) as tf:
            member = tf.extractfile("z.txt")
            assert member is not None and member.read() == b"compressed"
        with pytest.raises(docker.errors.NotFound):
            api.get_archive(c, "/does/not/exist")
        with pytest.raises(docker.errors.APIError) as bad:
            api.put_archive(c2, "/vol1/hello.txt", _tar_of({"x": b"x"}))
        assert bad.value.status_code == 400


def test_docker_py_diff_export_commit(daemon: Daemon) -> None:
    client = docker.DockerClient(base_url=daemon.host, version="1.41")
    with cleanup(daemon) as (containers, images):
        container = client.containers.run("busybox", "touch /test", detach=True, network_mode="none")
        containers.append(container.id)
        container.wait()
        assert container.diff() == [{"Path": "/test", "Kind": 1}]
        exported = b"".join(container.export())
        with tarfile.open(fileobj=io.BytesIO(exported)) as tf:
            assert "test" in tf.getnames()
        image = container.commit(changes=["EXPOSE 8000", 'CMD ["bash"]'], conf={"Env": ["FROM_CONF=1"]})
        images.append(image.id)
        cfg = client.api.inspect_image(image.id)["Config"]
        assert "8000/tcp" in cfg["ExposedPorts"] and cfg["Cmd"] == ["bash"]
        assert "FROM_CONF=1" in cfg["Env"] and any(e.startswith("PATH=") for e in cfg["Env"])
        out = client.containers.run(image.id, "ls /test", remove=True, network_mode="none")
        assert out == b"/test\n"
    client.close()


def test_hostile_archives_stay_inside_the_container(daemon: Daemon, tmp_path: Path) -> None:
    api = daemon.client()
    sentinel = tmp_path / "skiff-e2e-host-dir"
    sentinel.mkdir()
    with cleanup(daemon) as (containers, _):
        c = api.create_container(
            "busybox", "sleep 300", host_config=api.create_host_config(network_mode="none")
        )
        containers.append(c["Id"])
        api.start(c)

        def tar_with(*members: tarfile.TarInfo) -> bytes:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tf:
                for m in members:
                    tf.addfile(m, io.BytesIO(b"pwned"[: m.size]) if m.isreg() else None)
            return buf.getvalue()

        def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
            m = tarfile.TarInfo(name)
            m.type, m.linkname, m.mode = kind, link, 0o644
            m.size = 5 if kind == tarfile.REGTYPE else 0
            return m

        with pytest.raises(docker.errors.APIError) as dotdot:
            api.put_archive(c, "/tmp", tar_with(member("../../../../" + str(sentinel)[1:] + "/x")))
        assert dotdot.value.status_code == 400
        # An absolute symlink to a host directory names a path inside the destination.
        api.put_archive(c, "/tmp", tar_with(member("hostlink", tarfile.SYMTYPE, str(sentinel))))
        with pytest.raises(docker.errors.APIError):
            api.put_archive(c, "/tmp", tar_with(member("hostlink/x")))
        api.put_archive(c, "/", tar_with(member("hardlink", tarfile.LNKTYPE, "etc/passwd")))
        with pytest.raises(docker.errors.APIError):
            api.put_archive(c, "/tmp", tar_with(member("h2", tarfile.LNKTYPE, "/etc/shadow")))
        assert not any(sentinel.iterdir())
        ex = api.exec_create(c, "stat -c %h /etc/passwd")
        assert api.exec_start(ex).strip() == b"2"  # hard link made inside the container's root


# -- skiff CLI ---------------------------------------------------------------------------------


def test_skiff_cp_diff_export_commit(daemon: Daemon, tmp_path: Path) -> None:
    with cleanup(daemon) as (containers, images):
        name = unique_name()
        containers.append(name)
        image = f"skiff-e2e/skiff-commit:{unique_name('t')}"
        images.append(image)
        ok(daemon, "run", "-d", "--name", name, *NONE, "busybox", "sleep", "300")
        (tmp_path / "f.txt").write_text("from the host\n")
        err = stderr_on_a_tty(
            daemon, str(Path(daemon_bin()) / "skiff"), "cp", str(tmp_path / "f.txt"), f"{name}:/"
        )
        assert err == f"Successfully copied 2.05kB to {name}:/\n"
        assert ok(daemon, "exec", name, "cat", "/f.txt") == "from the host\n"
        ok(daemon, "cp", f"{name}:/etc", str(tmp_path / "etc-copy"))
        assert (tmp_path / "etc-copy" / "passwd").read_text().startswith("root:")
        raw = daemon.skiff("cp", f"{name}:/f.txt", "-").stdout
        with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
            assert tf.getnames() == ["f.txt"]
        ok(daemon, "cp", "-", f"{name}:/tmp", input=_tar_of({"in.txt": b"in"}))
        assert ok(daemon, "exec", name, "cat", "/tmp/in.txt") == "in"
        assert ok(daemon, "diff", name).splitlines() == ["A /f.txt", "C /tmp", "A /tmp/in.txt"]
        ok(daemon, "export", "-o", str(tmp_path / "fs.tar"), name)
        with tarfile.open(tmp_path / "fs.tar") as tf:
            assert "f.txt" in tf.getnames()
        image_id = ok(
            daemon, "commit", "-m", "msg", "-a", "me", "-c", "ENV FROM_COMMIT=yes", name, image
        ).strip()
        assert image_id.startswith("sha256:")
        assert ok(daemon, "run", "--rm", *NONE, image, "sh", "-c", "cat /f.txt; echo $FROM_COMMIT") == (
            "from the host\nyes\n"
        )
        r = daemon.skiff("cp", f"{name}:/missing", str(tmp_path / "x"))
        assert r.returncode == 1
        assert (
            f"Error response from daemon: Could not find the file /missing in container {name}"
            in r.stderr.decode()
        )


def daemon_bin() -> str:
    from tests.daemon_fixture import BIN

    return str(BIN)


# -- crash safety ------------------------------------------------------------------------------


def test_crash_during_cp_from_a_stopped_container_leaves_no_mounts() -> None:
    """skiffd dies while a stopped container's root and tmpfs volume are mounted for a copy;
    after the restart nothing stays mounted and the copy works."""
    from skiff.store.mount import is_mountpoint
    from tests.daemon_fixture import bootstrap_busybox, running_daemon

    with running_daemon() as d:
        bootstrap_busybox(d)
        api = d.client()
        vol = unique_name("skiff-e2e-vol")
        api.create_volume(vol, driver_opts={"type": "tmpfs", "device": "tmpfs"})
        cid = api.create_container(
            "busybox",
            ["true"],
            host_config=api.create_host_config(binds=[f"{vol}:/data"], network_mode="none"),
        )["Id"]
        rootfs = d.root / "containers" / cid / "rootfs"
        data = d.root / "volumes" / vol / "_data"
        d.stop()
        d.start(env={"SKIFF_FAILPOINTS": "ctrfs-after-mount"})
        with pytest.raises(Exception):  # noqa: B017 - the daemon dies mid-request
            d.client().get_archive(cid, "/data")
        d.proc.wait(10)  # type: ignore[union-attr]
        d.proc = None
        assert is_mountpoint(rootfs) and is_mountpoint(data), "the failpoint should leave both mounted"
        d.start()
        assert not is_mountpoint(rootfs) and not is_mountpoint(data)
        api = d.client()
        # (A tmpfs volume keeps its content only while mounted, as with dockerd's local driver.)
        api.put_archive(cid, "/tmp", _tar_of({"x": b"x"}))
        stream, st = api.get_archive(cid, "/tmp/x")
        assert st["size"] == 1 and len(b"".join(stream)) == 2048
        api.diff(cid)  # takes the container's lock, which the copy holds until it has unmounted
        assert not is_mountpoint(rootfs) and not is_mountpoint(data)
        api.remove_container(cid, force=True)
        api.remove_volume(vol)
