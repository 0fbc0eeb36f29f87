"""ImageStore end to end on real overlay snapshots: import, get, tag, untag, delete, crash (root)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from skiff.errors import InvalidArgument, NotFound
from skiff.images.imagestore import ImageStore
from skiff.images.oci import parse_config
from skiff.types.image import ImageConfig
from tests.integration.conftest import open_store

pytestmark = pytest.mark.root


def _rootfs(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o755, 1_700_000_000
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


TAR = _rootfs({"bin/app": b"#!/bin/sh\necho hi\n", "etc/conf": b"x=1\n"})


def test_import_get_list_tag_untag_delete(store: ImageStore) -> None:
    rec = store.import_image(
        io.BytesIO(TAR), changes=["CMD /bin/app", "ENV A=1"], message="m", repo_tag="myapp"
    )
    assert rec.repo_tags == ("myapp:latest",)
    assert rec.config.cmd == ("/bin/sh", "-c", "/bin/app")
    assert rec.size == len(b"#!/bin/sh\necho hi\n") + len(b"x=1\n")
    assert rec.comment == "m"
    assert len(rec.chain_ids) == 1
    # The image ID is the digest of the stored config blob, which describes the record.
    blob = store.config_blob(rec.id)
    assert store.content.info(rec.id).size == len(blob)
    assert parse_config(blob).diff_ids == rec.diff_ids

    for name in (
        "myapp",
        "myapp:latest",
        "docker.io/library/myapp",
        rec.id,
        rec.id[7:],
        rec.id[7:19],
        rec.id[:12],
    ):
        assert store.get(name).id == rec.id, name
    with pytest.raises(NotFound, match="No such image: nope"):
        store.get("nope")
    with pytest.raises(NotFound):
        store.get("myapp:other")

    store.tag("myapp", "localhost:5000/team/app:v1")
    store.tag(rec.id[7:19], "second")
    assert store.get("localhost:5000/team/app:v1").id == rec.id
    assert sorted(store.get(rec.id).repo_tags) == [
        "localhost:5000/team/app:v1",
        "myapp:latest",
        "second:latest",
    ]
    assert [r.repo_tags for r in store.list()] == [
        ("localhost:5000/team/app:v1", "myapp:latest", "second:latest")
    ]
    with pytest.raises(InvalidArgument):
        store.tag("myapp", "Bad:Name")
    store.untag("second")
    with pytest.raises(NotFound, match="No such image: second"):
        store.untag("second")
    with pytest.raises(NotFound):
        store.get("second")

    # A container snapshot on the image's top layer works from the record alone.
    top = store.top_layer(rec)
    assert top == rec.chain_ids[-1]
    store.snapshotter.prepare("skiff-ctr", top)
    assert store.delete(rec.id) == []  # layer kept: a container builds on it
    with pytest.raises(NotFound):
        store.get("myapp")
    assert store.snapshotter.exists(rec.chain_ids[0])
    store.snapshotter.remove("skiff-ctr")
    store.recover()  # now unused: collected
    assert not store.snapshotter.exists(rec.chain_ids[0])
    assert list(store.snapshotter.walk()) == []
    assert not store.content.exists(rec.id)


def test_identical_layers_stored_once_and_kept_while_used(store: ImageStore) -> None:
    a = store.import_image(io.BytesIO(TAR), repo_tag="a", created="2024-01-01T00:00:00Z")
    b = store.import_image(io.BytesIO(TAR), changes=["CMD sh"], repo_tag="b", created="2024-01-01T00:00:00Z")
    assert a.id != b.id
    assert a.chain_ids == b.chain_ids
    assert len(list(store.snapshotter.walk())) == 1
    assert store.delete(a.id) == []  # b still uses the layer
    assert store.snapshotter.exists(b.chain_ids[0])
    assert store.delete(b.id) == list(b.chain_ids)
    assert list(store.snapshotter.walk()) == []


def test_same_input_same_image_id(store: ImageStore) -> None:
    a = store.import_image(io.BytesIO(TAR), created="2024-01-01T00:00:00Z")
    b = store.import_image(io.BytesIO(TAR), created="2024-01-01T00:00:00Z")
    assert a.id == b.id
    assert len(store.list()) == 1


def test_two_layer_image_chain(store: ImageStore) -> None:
    d1, c1, _ = store.import_layer(io.BytesIO(_rootfs({"one": b"1"})), None)
    d2, c2, _ = store.import_layer(io.BytesIO(_rootfs({"two": b"2"})), c1)
    rec = store.create_image(ImageConfig(), [d1, d2], repo_tags=("two:layers",))
    assert rec.chain_ids == (c1, c2)
    assert store.snapshotter.stat(c2).parent == c1
    with pytest.raises(NotFound, match="import its layers first"):
        store.create_image(ImageConfig(), [d2])  # d2 alone is a different chain


def test_bad_layer_leaves_nothing(store: ImageStore) -> None:
    with pytest.raises(InvalidArgument):
        store.import_image(io.BytesIO(b"garbage" * 300), repo_tag="bad")
    with pytest.raises(InvalidArgument):
        store.import_image(io.BytesIO(TAR), changes=["RUNN x"])
    assert store.list() == []
    assert list(store.snapshotter.walk()) == []


def test_crash_during_import_leaves_no_partial_image(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    root = tmp_path / "root"
    big = _rootfs({f"f{i}": os.urandom(64 << 10) for i in range(32)})
    (tmp_path / "layer.tar").write_bytes(big)
    child = textwrap.dedent(
        f"""
        import io, os
        from pathlib import Path
        from skiff.images.imagestore import ImageStore
        from skiff.store.content import ContentStore
        from skiff.store.metadata import MetadataDB
        from skiff.store.snapshots import OverlaySnapshotter
        root = Path({str(root)!r})
        store = ImageStore(ContentStore(root / "content"), OverlaySnapshotter(root / "snapshots"),
                           MetadataDB(root / "metadata.db"))
        class Dying(io.BytesIO):
            def read(self, n=-1):
                if self.tell() > len(self.getvalue()) // 2:
                    os._exit(9)  # killed mid-extraction: no cleanup runs
                return super().read(n)
        store.import_image(Dying(Path({str(tmp_path / "layer.tar")!r}).read_bytes()), repo_tag="half")
        """
    )
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    store = open_store(root)
    try:
        assert store.list() == []
        with pytest.raises(NotFound):
            store.get("half")
        assert any(i.key.startswith("extract-") for i in store.snapshotter.walk())  # the half-made work
        store.recover()
        assert list(store.snapshotter.walk()) == []
        assert [p.name for p in (root / "snapshots").iterdir() if p.is_dir()] == []
        rec = store.import_image(io.BytesIO(big), repo_tag="half")  # and it works afterwards
        assert store.get("half").id == rec.id
    finally:
        store.db.close()
        store.snapshotter.close()


def test_commit_container_changes_as_new_layer(store: ImageStore, tmp_path: Path) -> None:
    from skiff.store.snapshots import mount_all, unmount

    base = store.import_image(io.BytesIO(TAR), repo_tag="base")
    top = store.top_layer(base)
    store.snapshotter.prepare("skiff-ctr", top)
    mnt = tmp_path / "skiff-mnt"
    mnt.mkdir()
    mount_all(store.snapshotter.mounts("skiff-ctr"), mnt)
    try:
        (mnt / "etc/conf").unlink()
        (mnt / "added").write_bytes(b"new")
    finally:
        unmount(mnt)
    diff_id, chain, size = store.import_diff(store.snapshotter.upper_dir("skiff-ctr"), top)
    assert size == 3
    committed = store.create_image(
        ImageConfig(cmd=("sh",)), [*base.diff_ids, diff_id], repo_tags=("committed",)
    )
    assert committed.chain_ids == (*base.chain_ids, chain)
    view = store.snapshotter.view("skiff-view", chain)
    mount_all(view, mnt)
    try:
        assert (mnt / "added").read_bytes() == b"new"
        assert not (mnt / "etc/conf").exists()
        assert (mnt / "bin/app").exists()
    finally:
        unmount(mnt)
    # The regenerated tar of the new layer re-imports to the same diff_id.
    out = io.BytesIO()
    assert store.layer_tar(chain, out).diff_id == diff_id
    with pytest.raises(NotFound):
        store.layer_tar("sha256:" + "0" * 64, io.BytesIO())


def test_register_config_merges_repo_digests(store: ImageStore) -> None:
    rec = store.import_image(io.BytesIO(TAR), created="2024-01-01T00:00:00Z")
    blob = store.config_blob(rec.id)
    d1 = "a/x@sha256:" + "1" * 64
    d2 = "b/y@sha256:" + "2" * 64
    store.register_config(
        blob, repo_tags=("a/x:1",), repo_digests=(d1,), manifest_digest="sha256:" + "1" * 64
    )
    again = store.register_config(blob, repo_digests=(d2, d1))
    assert again.id == rec.id
    assert again.repo_digests == (d1, d2)
    assert again.manifest_digest == "sha256:" + "1" * 64
    assert store.get(d2).id == rec.id
    assert store.get("a/x:1").id == rec.id
