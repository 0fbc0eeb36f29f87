"""Base images built on this host, without a registry: busybox (from busybox-static) and Debian.

``bootstrap_busybox`` is deterministic (fixed mtimes, owners, order and creation time), so the
same host binary always yields the same image ID. ``bootstrap_debian`` runs debootstrap against
the mirror named in the host's apt configuration.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from skiff.errors import NotFound, RuntimeFailure, Unavailable
from skiff.images.imagestore import ImageStore, utc_now
from skiff.store.mount import is_mountpoint, unmount
from skiff.types.image import HistoryEntry, ImageConfig, ImageRecord

BUSYBOX_MTIME = 1704067200  # 2024-01-01T00:00:00Z: fixed so the image ID depends only on content
BUSYBOX_CREATED = "2024-01-01T00:00:00Z"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""
_GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
"""
_SHADOW = "".join(f"{line.split(':')[0]}:*:10933:0:99999:7:::\n" for line in _PASSWD.splitlines())
_DIRS = {
    "bin": 0o755,
    "dev": 0o755,
    "etc": 0o755,
    "home": 0o755,
    "proc": 0o755,
    "root": 0o700,
    "sys": 0o755,
    "tmp": 0o1777,
    "usr": 0o755,
    "usr/bin": 0o755,
    "usr/sbin": 0o755,
    "sbin": 0o755,
    "var": 0o755,
    "var/spool": 0o755,
    "var/spool/mail": 0o755,
    "var/www": 0o755,
}


def _find_busybox() -> Path:
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.isfile(candidate):
            return Path(candidate)
    raise NotFound("busybox binary not found: install the Debian package busybox-static (make deps)")


def _busybox_applets(busybox: Path) -> list[str]:
    try:
        out = subprocess.run([str(busybox), "--list-full"], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise RuntimeFailure(f"{busybox} --list-full failed: {e}") from None
    return sorted({line.strip().lstrip("/") for line in out.splitlines() if line.strip()})


def busybox_rootfs_tar(busybox: Path | None = None) -> bytes:
    """The busybox rootfs as an uncompressed tar (deterministic for the same binary)."""
    binary = busybox or _find_busybox()
    applets = _busybox_applets(binary)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:

        def add(name: str, kind: bytes, mode: int, data: bytes = b"", linkname: str = "") -> None:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime, ti.linkname = kind, mode, BUSYBOX_MTIME, linkname
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if data else None)

        dirs = dict(_DIRS)
        for applet in applets:  # every applet's directory must exist before its link
            parts = applet.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.setdefault("/".join(parts[:i]), 0o755)
        for d in sorted(dirs):
            add(d, tarfile.DIRTYPE, dirs[d])
        add("bin/busybox", tarfile.REGTYPE, 0o755, binary.read_bytes())
        for applet in applets:
            if applet != "bin/busybox":
                # Hard links, as in Docker's busybox image: one inode, every applet name.
                add(applet, tarfile.LNKTYPE, 0o755, linkname="bin/busybox")
        add("etc/passwd", tarfile.REGTYPE, 0o644, _PASSWD.encode())
        add("etc/group", tarfile.REGTYPE, 0o644, _GROUP.encode())
        add("etc/shadow", tarfile.REGTYPE, 0o600, _SHADOW.encode())
    return buf.getvalue()


def bootstrap_busybox(store: ImageStore, tag: str = "busybox:latest") -> ImageRecord:
    """Build the busybox image from the host's busybox-static binary and tag it."""
    diff_id, _, _ = store.import_layer(io.BytesIO(busybox_rootfs_tar()), None)
    history = (HistoryEntry(created=BUSYBOX_CREATED, created_by="skiff bootstrap busybox", comment=""),)
    return store.create_image(
        ImageConfig(env=(DEFAULT_PATH,), cmd=("sh",)),
        [diff_id],
        history=history,
        created=BUSYBOX_CREATED,
        repo_tags=(tag,),
    )


# -- Debian ------------------------------------------------------------------------------------


def _deb822_stanzas(text: str) -> Iterator[dict[str, str]]:
    stanza: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if stanza:
                yield stanza
            stanza = {}
            continue
        if line[0] in " \t":
            continue  # continuation lines (e.g. inline keys) carry nothing we need
        key, _, value = line.partition(":")
        stanza[key.strip().lower()] = value.strip()
    if stanza:
        yield stanza


def apt_mirror(suite: str, etc_apt: Path = Path("/etc/apt")) -> str:
    """The Debian mirror URI the host's apt uses for ``suite`` (never hard-coded)."""
    candidates: list[tuple[str, str]] = []  # (uri, suites)
    sources = [etc_apt / "sources.list"]
    d = etc_apt / "sources.list.d"
    if d.is_dir():
        sources += sorted(d.iterdir())
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.name.endswith(".sources"):
            for st in _deb822_stanzas(text):
                if "deb" in st.get("types", "").split() and st.get("enabled", "yes") != "no":
                    for uri in st.get("uris", "").split():
                        candidates.append((uri, st.get("suites", "")))
        elif path.name.endswith(".list"):
            for line in text.splitlines():
                words = line.split("#", 1)[0].split()
                if words[:1] != ["deb"]:
                    continue
                words = words[1:]
                if words and words[0].startswith("["):
                    while words and not words[0].endswith("]"):
                        words = words[1:]
                    words = words[1:]
                if len(words) >= 2:
                    candidates.append((words[0], words[1]))
    for uri, suites in candidates:
        if suite in suites.split():
            return uri
    for uri, suites in candidates:
        if "security" not in uri and "security" not in suites:
            return uri
    raise Unavailable(f"no Debian mirror for {suite!r} in {etc_apt}/sources.list(.d); configure apt first")


def _unmount_under(root: Path) -> None:
    """Detach every mount at or below ``root`` (debootstrap may leave /proc, /sys mounted)."""
    prefix = os.path.realpath(root)
    points: list[str] = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            mp = fields[4].replace("\\040", " ")
            if mp == prefix or mp.startswith(prefix + "/"):
                points.append(mp)
    for mp in sorted(points, key=len, reverse=True):
        unmount(Path(mp))
    if is_mountpoint(root):
        raise RuntimeFailure(f"could not unmount everything under {root}")


_EXCLUDE_CONTENT = ("dev", "proc", "sys", "run", "tmp", "var/cache/apt/archives", "var/lib/apt/lists")


def _tar_tree(root: Path, out: BinaryIO) -> None:
    def keep(ti: tarfile.TarInfo) -> tarfile.TarInfo | None:
        name = ti.name.removeprefix("./")
        for d in _EXCLUDE_CONTENT:
            if name.startswith(d + "/") and not (d == "var/cache/apt/archives" and name.endswith("/partial")):
                return None
        ti.uname = ti.gname = ""
        return ti

    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for entry in sorted(os.listdir(root)):
            tf.add(root / entry, arcname=entry, recursive=True, filter=keep)


def bootstrap_debian(store: ImageStore, tag: str = "debian:bookworm", suite: str = "bookworm") -> ImageRecord:
    """debootstrap --variant=minbase ``suite`` into a temp dir, import it, tag it. Slow (minutes)."""
    if shutil.which("debootstrap") is None:
        raise Unavailable("debootstrap is not installed: apt-get install debootstrap (make deps)")
    mirror = apt_mirror(suite)
    tmp = Path(tempfile.mkdtemp(prefix="skiff-debootstrap-", dir="/var/tmp"))
    rootfs = tmp / "rootfs"
    try:
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase", suite, str(rootfs), mirror],
            capture_output=True,
            text=True,
        )
        _unmount_under(rootfs)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise RuntimeFailure(
                f"debootstrap {suite} from {mirror} failed (exit {proc.returncode}):\n{tail}"
            )
        r, w = os.pipe()
        errors: list[BaseException] = []

        def produce() -> None:
            try:
                with open(w, "wb") as out:
                    _tar_tree(rootfs, out)
            except BaseException as e:  # reported to the importing thread below
                errors.append(e)

        t = threading.Thread(target=produce, name="skiff-debian-tar", daemon=True)
        t.start()
        try:
            with open(r, "rb") as stream:
                diff_id, _, _ = store.import_layer(stream, None)
        finally:
            t.join()
        if errors:
            raise RuntimeFailure(f"archiving the Debian rootfs failed: {errors[0]}")
        return store.create_image(
            ImageConfig(env=(DEFAULT_PATH,), cmd=("bash",)),
            [diff_id],
            history=(HistoryEntry(created=utc_now(), created_by=f"debootstrap --variant=minbase {suite}"),),
            repo_tags=(tag,),
        )
    finally:
        _unmount_under(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
