"""The one busybox root filesystem every peer runs, built from the host's static busybox.

Every peer imports the same tar (``docker import``, ``podman import``, ``skiff image bootstrap``
builds the equivalent), and bare runc gets it unpacked as a bundle, so all of them start the
same bytes.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import time
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "etc", "root", "var/www")
_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
    "etc/hostname": "busybox\n",
}


def applets() -> list[str]:
    """Applet paths relative to / (``usr/bin/wget`` ...) as the host busybox lists them."""
    if not BUSYBOX.exists():
        raise RuntimeError(f"{BUSYBOX} is missing: apt-get install busybox-static")
    out = subprocess.run([str(BUSYBOX), "--list-full"], capture_output=True, text=True, check=True)
    return [
        line.strip() for line in out.stdout.splitlines() if line.strip() and line.strip() != "bin/busybox"
    ]


def build_rootfs_tar(dest: Path) -> Path:
    """Write a tar of a minimal busybox root filesystem (bin/busybox and a symlink per applet)."""
    now = int(time.time())
    with tarfile.open(dest, "w") as tar:
        for d in _DIRS:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755, now
            tar.addfile(info)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for applet in applets():
            link = tarfile.TarInfo(applet)
            link.type, link.linkname, link.mode, link.mtime = tarfile.SYMTYPE, "/bin/busybox", 0o777, now
            tar.addfile(link)
        for name, text in _FILES.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, now
            tar.addfile(info, io.BytesIO(data))
    return dest


def make_runc_bundle(bundle: Path, rootfs_tar: Path, cgroup_parent: str, args: list[str]) -> Path:
    """Unpack the rootfs and write an OCI config.json (from ``runc spec``) running ``args``.

    The spec keeps runc's defaults (new net namespace, so the container sees only its own
    loopback: the equivalent of ``--network none``) and puts the cgroup under our prefix.
    """
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True, exist_ok=True)
    with tarfile.open(rootfs_tar) as tar:
        tar.extractall(rootfs, filter="fully_trusted")
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True, capture_output=True)
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = args
    config["root"]["readonly"] = True
    config["linux"]["cgroupsPath"] = f"/{cgroup_parent}/runc"
    config_path.write_text(json.dumps(config, indent=2))
    return bundle
