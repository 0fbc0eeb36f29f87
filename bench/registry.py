"""Push then pull a ~1 GiB image of four layers over loopback: skiff vs skopeo with docker-registry 2.8.

Issue 6's benchmark. The image: four uncompressed layers of 256 MiB each (four files of random
bytes per layer: incompressible, as real media layers are), 1 GiB in all.

- **skiff**: a bench skiffd, driven by the docker CLI (``docker push``/``pull``, as the other
  benches drive both engines) and, as a second line, by the ``skiff`` CLI (which adds its Python
  start-up), against ``skiff registry serve`` (or docker-registry 2.8 when the skiff registry is
  missing). The pull follows an ``rmi`` that deletes the image and its layers: it downloads,
  verifies and unpacks everything into the snapshotter.
- **skopeo**: ``skopeo copy`` from an OCI layout of the same image to docker-registry 2.8 (skopeo
  gzips every layer on the way: that is what it does for a registry), then back into a fresh OCI
  layout (blobs only, nothing unpacked), and into a fresh ``containers-storage`` (layers unpacked
  into overlay directories, which is what ``podman pull`` does and the fair peer of a pull that
  unpacks).

Every round starts both registries empty (fresh storage on a new port, untimed), so a push
uploads every layer and nothing is skipped or mounted; the pull that follows reads what that
push stored. Rounds alternate who goes first. Throughput ratio = skopeo's time / skiff's time
(>= 1.0: skiff is at least as fast).

    .venv/bin/python -m bench.registry --runs 5
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

from bench.common import (
    brief,
    figure,
    interleaved_rounds,
    print_series,
    rounds_parser,
    summarize,
    timed_run,
    tool_version,
    unmount_all_under,
    write_result,
)
from bench.peers import Peer, ensure_packages, guarded, skiff_bin, skiff_peer, skiff_peer_cli
from bench.run_bridge import SKIFF_BRIDGE, SKIFF_CHAINS, skiff_settings

LAYERS = 4
FILES_PER_LAYER = 4
FILE_MB = 64
TAG = "bench/big:v1"
SCRATCH = Path("/tmp/skiff-bench-registry")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def make_layers(work: Path) -> list[Path]:
    """Four layer tars of random files (written once per run)."""
    out = []
    for i in range(LAYERS):
        path = work / f"layer{i}.tar"
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
            for j in range(FILES_PER_LAYER):
                data = os.urandom(FILE_MB << 20)
                info = tarfile.TarInfo(f"data/l{i}/f{j}.bin")
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
        out.append(path)
    return out


def write_archive_and_layout(layers: list[Path], work: Path) -> tuple[Path, Path, int]:
    """A docker-archive (for ``skiff load``) and an OCI layout (for skopeo) of the same image."""
    diff_ids = [_sha256_file(p) for p in layers]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": f"bench layer {i}"} for i in range(len(layers))],
        },
        sort_keys=True,
    ).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    archive = work / "image.tar"
    with tarfile.open(archive, "w") as tar:
        manifest = [
            {
                "Config": f"{config_digest[7:]}.json",
                "RepoTags": [f"skbench.local/{TAG}"],
                "Layers": [f"{d[7:]}/layer.tar" for d in diff_ids],
            }
        ]
        _add(tar, manifest[0]["Config"], config)  # type: ignore[arg-type]
        for d, p in zip(diff_ids, layers, strict=True):
            tar.add(p, arcname=f"{d[7:]}/layer.tar")
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    layout = work / "layout"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for d, p in zip(diff_ids, layers, strict=True):
        os.link(p, blobs / d[7:])
    (blobs / config_digest[7:]).write_bytes(config)
    oci_manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": p.stat().st_size}
                for d, p in zip(diff_ids, layers, strict=True)
            ],
        }
    ).encode()
    m_digest = "sha256:" + hashlib.sha256(oci_manifest).hexdigest()
    (blobs / m_digest[7:]).write_bytes(oci_manifest)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": m_digest,
                "size": len(oci_manifest),
                "annotations": {"org.opencontainers.image.ref.name": "v1"},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return archive, layout, sum(p.stat().st_size for p in layers)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


# -- registries ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"registry exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"registry did not listen on {port}")


@contextlib.contextmanager
def registry(kind: str, base: Path) -> Iterator[str]:
    """An empty registry on a fresh loopback port; yields host:port. Stopped by pid, storage removed."""
    base.mkdir(parents=True)
    port = _free_port()
    if kind == "skiff":
        argv = [
            skiff_bin("skiff"),
            "registry",
            "serve",
            "--addr",
            f"127.0.0.1:{port}",
            "--root",
            str(base / "root"),
        ]
        argv += ["--log-level", "warning"]
    else:
        config = base / "config.yml"
        config.write_text(
            json.dumps(
                {
                    "version": 0.1,
                    "log": {"level": "error", "accesslog": {"disabled": True}},
                    "storage": {"filesystem": {"rootdirectory": str(base / "data")}},
                    "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
                }
            )
        )
        argv = ["docker-registry", "serve", str(config)]
    log = open(base / "registry.log", "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def cleanup() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()
        shutil.rmtree(base, ignore_errors=True)

    with guarded(cleanup):
        _wait_port(port, proc)
        yield f"127.0.0.1:{port}"


def skiff_registry_available() -> bool:
    out = subprocess.run(
        [skiff_bin("skiff"), "registry", "--help"], capture_output=True, text=True, check=False
    )
    return out.returncode == 0 and "serve" in out.stdout


# -- the two sides ---------------------------------------------------------------------------------


class SkiffSide:
    """skiff CLI -> bench skiffd -> a fresh registry each round."""

    def __init__(self, cli: Peer, registry_kind: str, source: str, label: str) -> None:
        self.cli = cli
        self.label = label
        self.kind = registry_kind
        self.source = source  # the loaded image, tagged again for each round's registry
        self.host = ""
        self._stack: ExitStack | None = None

    def fresh(self, round_no: int) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack = ExitStack()
        self.host = self._stack.enter_context(registry(self.kind, SCRATCH / f"{self.label}-reg-{round_no}"))
        self.cli.sh("tag", self.source, f"{self.host}/{TAG}")

    def push(self, round_no: int) -> float:
        self.fresh(round_no)
        return timed_run(self.cli.argv("push", "-q", f"{self.host}/{TAG}"), env=self.cli.env, timeout=900)

    def pull(self, round_no: int) -> float:
        # Both tags go, so the image and its layers are deleted: the pull must fetch everything.
        self.cli.sh("rmi", self.source, f"{self.host}/{TAG}")
        took = timed_run(self.cli.argv("pull", "-q", f"{self.host}/{TAG}"), env=self.cli.env, timeout=900)
        self.cli.sh("tag", f"{self.host}/{TAG}", self.source)  # the next round pushes it again
        self.cli.sh("rmi", f"{self.host}/{TAG}")
        return took

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()


class SkopeoSide:
    """skopeo copy: OCI layout -> fresh docker-registry 2.8 -> a fresh OCI layout (blobs only), and
    -> a fresh containers-storage (layers unpacked into overlay, as ``podman pull`` does)."""

    def __init__(self, layout: Path) -> None:
        self.layout = layout
        self.host = ""
        self._stack: ExitStack | None = None

    def fresh(self, round_no: int) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack = ExitStack()
        self.host = self._stack.enter_context(registry("distribution", SCRATCH / f"dist-reg-{round_no}"))

    def push(self, round_no: int) -> float:
        self.fresh(round_no)
        argv = ["skopeo", "--insecure-policy", "copy", "-q", "--dest-tls-verify=false"]
        return timed_run([*argv, f"oci:{self.layout}:v1", f"docker://{self.host}/{TAG}"], timeout=900)

    def _pull_to(self, dest: str, target: Path) -> float:
        argv = ["skopeo", "--insecure-policy", "copy", "-q", "--src-tls-verify=false"]
        try:
            return timed_run([*argv, f"docker://{self.host}/{TAG}", dest], timeout=900)
        finally:
            unmount_all_under(target)
            shutil.rmtree(target, ignore_errors=True)

    def pull(self, round_no: int) -> float:
        target = SCRATCH / f"pulled-{round_no}"
        return self._pull_to(f"oci:{target}:v1", target)

    def pull_unpacked(self, round_no: int) -> float:
        target = SCRATCH / f"storage-{round_no}"
        return self._pull_to(f"containers-storage:[overlay@{target}/root+{target}/run]{TAG}", target)

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()


def main() -> None:
    parser = rounds_parser(__doc__, runs=5, warmup=1, max_seconds=1800)
    parser.add_argument("--registry", choices=["auto", "skiff", "distribution"], default="auto",
                        help="the registry skiff pushes to (auto: skiff's if it exists)")  # fmt: skip
    args = parser.parse_args()
    ensure_packages("skopeo", "docker-registry")
    kind = args.registry
    if kind == "auto":
        kind = "skiff" if skiff_registry_available() else "distribution"
    if SCRATCH.exists():
        raise RuntimeError(f"{SCRATCH} exists: another bench is running, or remove its leftovers")
    notes: list[str] = []
    with ExitStack() as stack:
        SCRATCH.mkdir(parents=True)
        stack.callback(shutil.rmtree, SCRATCH, True)
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="layers-", dir=SCRATCH)))
        print(f"making a {LAYERS * FILES_PER_LAYER * FILE_MB} MiB image of {LAYERS} layers ...")
        layers = make_layers(work)
        archive, layout, total = write_archive_and_layout(layers, work)
        sides: dict[str, SkiffSide | SkopeoSide] = {}
        if "skiff" not in args.skip:
            try:
                daemon = stack.enter_context(
                    skiff_peer(settings=skiff_settings(), bridge=SKIFF_BRIDGE, chain_prefix=SKIFF_CHAINS)
                )
                cli = skiff_peer_cli(daemon)
                cli.sh("load", "-q", "-i", str(archive), timeout=900)
                source = f"skbench.local/{TAG}"
                # The docker CLI through skiffd isolates skiff's registry client; the skiff CLI
                # adds its own start-up (a Python process, ~0.4 s) to every command.
                for name, peer in (("skiff", daemon), ("skiff CLI", cli)):
                    side = SkiffSide(peer, kind, source, name.replace(" ", "-"))
                    stack.callback(side.close)
                    sides[name] = side
            except Exception as exc:
                notes.append(f"skiff: not measured ({brief(exc)})")
                print(f"! {notes[-1]}")
        if "skopeo" not in args.skip:
            side2 = SkopeoSide(layout)
            stack.callback(side2.close)
            sides["skopeo"] = side2

        # One command per (side, direction); a round is push then pull on the same fresh registry.
        samples: dict[str, list[float]] = {}

        def round_of(name: str, side: SkiffSide | SkopeoSide) -> Callable[[int], float]:
            def go(i: int) -> float:
                times = {"push": side.push(i), "pull": side.pull(i)}
                if isinstance(side, SkopeoSide):
                    times["pull, unpacked"] = side.pull_unpacked(i)
                for what, ms in times.items():
                    samples.setdefault(f"{name} {what}", []).append(ms)
                return sum(times.values())

            return go

        commands = {name: round_of(name, s) for name, s in sides.items()}
        for run in commands.values():
            for i in range(args.warmup):
                run(-1 - i)
        samples.clear()
        interleaved_rounds(commands, args.runs, args.max_seconds, notes)
        series = {key: summarize(v) for key, v in samples.items() if v}
    print_series(f"push / pull of {total / 1e9:.2f} GB in {LAYERS} layers over loopback (ms)", series)

    def throughput(skopeo: str, skiff: str) -> float | None:
        a, b = series.get(f"skopeo {skopeo}"), series.get(f"skiff {skiff}")
        return round(a.p50 / b.p50, 3) if a and b and b.p50 else None

    def mb_s(key: str) -> float | None:
        s = series.get(key)
        return round(total / 1e6 / (s.p50 / 1000), 1) if s else None

    registry_name = "skiff registry serve" if kind == "skiff" else "docker-registry 2.8"
    peer = f"skiff ({registry_name}) / skopeo (docker-registry 2.8)"
    figures = [
        figure(f"push throughput, {peer}, p50", throughput("push", "push"), ">= 1.0", 1.0, True),
        figure(f"pull throughput, {peer} into an OCI layout (no unpacking), p50", throughput("pull", "pull"), ">= 1.0", 1.0, True),
        figure(f"pull throughput, {peer} into containers-storage (unpacked, as podman pull), p50", throughput("pull, unpacked", "pull"), "", None),
        figure("skiff push MB/s (p50)", mb_s("skiff push"), "", None),
        figure("skiff pull MB/s (p50, incl. unpacking)", mb_s("skiff pull"), "", None),
        figure("skiff CLI push MB/s (p50)", mb_s("skiff CLI push"), "", None),
        figure("skiff CLI pull MB/s (p50)", mb_s("skiff CLI pull"), "", None),
        figure("skopeo push MB/s (p50, gzips each layer)", mb_s("skopeo push"), "", None),
        figure("skopeo pull MB/s (p50, into an OCI layout)", mb_s("skopeo pull"), "", None),
        figure("skopeo pull MB/s (p50, into containers-storage)", mb_s("skopeo pull, unpacked"), "", None),
    ]  # fmt: skip
    write_result(
        "registry",
        {
            "title": "registry push + pull of a ~1 GiB image (4 layers) over loopback: skiff vs skopeo",
            "params": {
                "runs": args.runs,
                "warmup": args.warmup,
                "image": f"{total} bytes, {LAYERS} uncompressed layers of {FILES_PER_LAYER} random files",
                "skiff": f"docker CLI (and skiff CLI) -> skiffd -> {registry_name}",
                "skopeo": f"{tool_version(['skopeo', '--version'])}, oci: layout <-> docker-registry 2.8",
            },
            "series": series,
            "figures": figures,
            "notes": notes,
        },
    )


if __name__ == "__main__":
    main()
