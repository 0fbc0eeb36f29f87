"""A project's images: pull, build (the daemon's classic ``POST /build``), push, and the
``ensure`` step of ``up``/``run``/``create`` that makes sure every service has one.

Compose's rules: a service with ``build`` is built when its image is missing (``--build``
or ``pull_policy: build``: always; ``--no-build``: never), one with only ``image`` is
pulled when missing (``pull_policy: always``: always; ``never``: never). A built image
is named ``image`` if given, else ``<project>-<service>``. The image ID each service runs
is recorded on its containers (``com.docker.compose.image``) so a rebuilt or re-pulled
image recreates them.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from docker.utils.build import create_archive, exclude_paths

from skiff.build.dockerignore import read_patterns
from skiff.client import Client
from skiff.client.credentials import registry_auth_header
from skiff.compose.convert import image_name
from skiff.compose.progress import DONE, ERROR, Progress
from skiff.errors import InvalidArgument, NotFound, SkiffError
from skiff.images.reference import parse_reference

BuildOutput = Callable[[str], None]


def pull_image(client: Client, image: str, progress: Progress, label: str) -> None:
    """``POST /images/create`` for ``image``, reported as one progress line."""
    ref = parse_reference(image)
    progress.event("Image", label, "Pulling")
    try:
        for _ in client.pull(
            ref.name(), ref.digest or ref.tag, registry_auth=registry_auth_header(ref.domain)
        ):
            pass
    except SkiffError as exc:
        progress.event("Image", label, "Error", ERROR, exc.message)
        raise
    progress.event("Image", label, "Pulled", DONE)


def push_image(client: Client, image: str, progress: Progress) -> None:
    """``POST /images/{name}/push`` for ``image``."""
    ref = parse_reference(image)
    progress.event("Image", image, "Pushing")
    try:
        for _ in client.push(ref.name(), ref.tag, registry_auth=registry_auth_header(ref.domain)):
            pass
    except SkiffError as exc:
        progress.event("Image", image, "Error", ERROR, exc.message)
        raise
    progress.event("Image", image, "Pushed", DONE)


def _context_tar(build: Mapping[str, Any]) -> tuple[IO[bytes], str]:
    """The build context as the docker CLI packs it, and the ``dockerfile`` parameter."""
    context = str(build.get("context") or ".")
    if "://" in context or context.startswith("git@"):
        raise InvalidArgument(f"build context {context}: only local directories are supported")
    root = Path(context)
    if not root.is_dir():
        raise InvalidArgument(f'unable to prepare context: path "{context}" not found')
    ignore = root / ".dockerignore"
    patterns = read_patterns(ignore.read_text()) if ignore.is_file() else []
    extra: list[tuple[str, str]] = []
    if build.get("dockerfile_inline") is not None:
        name = ".compose.Dockerfile"
        extra = [(name, str(build["dockerfile_inline"]))]
    else:
        dockerfile = Path(str(build.get("dockerfile") or "Dockerfile"))
        path = dockerfile if dockerfile.is_absolute() else root / dockerfile
        try:
            name = path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            name = ".compose.Dockerfile"
            try:
                extra = [(name, path.read_text())]
            except OSError as exc:
                raise InvalidArgument(f"unable to read {path}: {exc.strerror}") from None
    if extra:
        extra.append((".dockerignore", "\n".join([*patterns, name])))
    files = sorted(exclude_paths(str(root), list(patterns), dockerfile=name))
    out = tempfile.TemporaryFile()
    create_archive(str(root), files=files, fileobj=out, extra_files=extra)
    out.seek(0)
    return out, name


def build_params(tag: str, build: Mapping[str, Any], no_cache: bool, pull: bool) -> dict[str, Any]:
    """The ``POST /build`` query of one service."""
    params: dict[str, Any] = {"t": [tag, *[str(t) for t in build.get("tags") or []]], "rm": 1, "forcerm": 1}
    if build.get("target"):
        params["target"] = str(build["target"])
    args = {k: v for k, v in (build.get("args") or {}).items() if v is not None}
    if args:
        params["buildargs"] = json.dumps({str(k): str(v) for k, v in args.items()})
    if build.get("labels"):
        params["labels"] = json.dumps({str(k): str(v) for k, v in build["labels"].items()})
    if build.get("network"):
        params["networkmode"] = str(build["network"])
    hosts = build.get("extra_hosts")
    if hosts:
        items = (
            hosts.items()
            if isinstance(hosts, Mapping)
            else (str(h).replace("=", ":", 1).split(":", 1) for h in hosts)
        )
        params["extrahosts"] = [f"{h}:{ip}" for h, ip in items]
    if build.get("shm_size"):
        from skiff.compose.values import size_bytes

        params["shmsize"] = size_bytes(build["shm_size"], "build.shm_size")
    if no_cache or build.get("no_cache"):
        params["nocache"] = 1
    if pull or build.get("pull"):
        params["pull"] = 1
    return params


def build_service(
    client: Client,
    project: str,
    name: str,
    service: Mapping[str, Any],
    output: BuildOutput,
    *,
    no_cache: bool = False,
    pull: bool = False,
) -> str:
    """Build one service's image; returns the image ID. Errors raise with the build's message."""
    build = service.get("build")
    if not isinstance(build, Mapping):
        raise InvalidArgument(f"service {name!r} has no build section")
    tag = image_name(project, name, service)
    body, dockerfile = _context_tar(build)
    params = build_params(tag, build, no_cache, pull)
    params["dockerfile"] = dockerfile
    image_id = ""
    with body:
        for msg in client.build(body, params):
            if msg.get("stream"):
                output(str(msg["stream"]))
            aux = msg.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = str(aux["ID"])
            if "errorDetail" in msg or "error" in msg:
                detail = msg.get("errorDetail") or {}
                raise SkiffError(f"failed to build {name}: {detail.get('message') or msg.get('error')}")
    return image_id or str(client.inspect_image(tag)["Id"])


def image_id(client: Client, image: str) -> str | None:
    """The local image's ID, or None when it is not there."""
    try:
        return str(client.inspect_image(image)["Id"])
    except NotFound:
        return None


def ensure_images(
    client: Client,
    project: str,
    services: Mapping[str, Mapping[str, Any]],
    progress: Progress,
    output: BuildOutput,
    *,
    build: str = "auto",  # auto | always | never
    pull: str = "missing",  # missing | always | never (a flag over each service's pull_policy)
) -> dict[str, str]:
    """Make sure each service's image exists; returns service -> image ID."""
    ids: dict[str, str] = {}
    known: dict[str, str | None] = {}

    def local(image: str) -> str | None:
        if image not in known:
            known[image] = image_id(client, image)
        return known[image]

    for name in sorted(services):
        svc = services[name]
        image = image_name(project, name, svc)
        policy = str(svc.get("pull_policy") or pull)
        has_build = isinstance(svc.get("build"), Mapping)
        if has_build and (build == "always" or policy == "build"):
            if build == "never":
                raise InvalidArgument(f"service {name!r} must be built but --no-build was given")
            known[image] = build_service(client, project, name, svc, output)
        elif policy == "always" and not has_build:
            pull_image(client, image, progress, name)
            known.pop(image, None)
        found = local(image)
        if found is None:
            if has_build:
                if build == "never":
                    raise NotFound(f"No such image: {image} (service {name!r}: build it or drop --no-build)")
                found = known[image] = build_service(client, project, name, svc, output)
            elif policy == "never":
                raise NotFound(f"No such image: {image}")
            else:
                pull_image(client, image, progress, name)
                known.pop(image, None)
                found = local(image)
                if found is None:
                    raise NotFound(f"No such image: {image}")
        ids[name] = found
    return ids
