"""Build routes: ``POST /build`` (the classic builder's stream) and ``POST /build/prune``.

Errors found before the build starts (a bad parameter, no Dockerfile, a parse error) are
real HTTP errors, as dockerd sends them; after the first line of output they arrive as
``{"errorDetail": ...}`` in the stream (with ``code`` for a failed RUN). A client that goes
away cancels the build: its RUN container is removed and no image is recorded for the
unfinished step.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
from typing import Any

from aiohttp import web

from skiff.api.app import Routes, engine_of, qbool, qint
from skiff.api.streams import JsonLines
from skiff.engine.build import BuildOptions
from skiff.engine.build_steps import StepFailed
from skiff.errors import InvalidArgument, SkiffError
from skiff.registry.auth import decode_registry_config

log = logging.getLogger("skiff.api")
_STDERR_START, _STDERR_END = "\x1b[91m", "\x1b[0m"
_SPOOL_IN_MEMORY = 8 * 1024 * 1024


def _json_param(request: web.Request, name: str, kind: type) -> Any:
    raw = request.query.get(name)
    if raw is None or raw in ("", "null"):
        return kind()
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidArgument(f"invalid {name}: not JSON") from None
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise InvalidArgument(f"invalid {name}: expected a JSON {kind.__name__}")
    return value


def build_options(request: web.Request) -> BuildOptions:
    """Docker's ``/build`` query parameters (unknown ones are ignored, as dockerd does)."""
    build_args = _json_param(request, "buildargs", dict)
    labels = _json_param(request, "labels", dict)
    cache_from = _json_param(request, "cachefrom", list)
    if not all(isinstance(v, str | None) for v in build_args.values()):
        raise InvalidArgument("invalid buildargs: values must be strings")
    if not all(isinstance(v, str) for v in labels.values()):
        raise InvalidArgument("invalid labels: values must be strings")
    if not all(isinstance(v, str) for v in cache_from):
        raise InvalidArgument("invalid cachefrom: expected a list of image references")
    if request.query.get("remote"):
        raise InvalidArgument(
            "remote build contexts (git or URL) are not supported: send the context as the body"
        )
    extra_hosts: list[str] = []
    for value in request.query.getall("extrahosts", []):
        extra_hosts += [h for h in value.split(",") if h]
    network = request.query.get("networkmode", "")
    return BuildOptions(
        registry_auth=decode_registry_config(request.headers.get("X-Registry-Config")),
        tags=tuple(t for t in request.query.getall("t", []) if t),
        dockerfile=request.query.get("dockerfile", ""),
        build_args=build_args,
        labels=labels,
        target=request.query.get("target", ""),
        no_cache=qbool(request, "nocache"),
        cache_from=tuple(cache_from),
        network_mode="" if network == "default" else network,
        remove=qbool(request, "rm", default=True),
        force_remove=qbool(request, "forcerm"),
        extra_hosts=tuple(extra_hosts),
        shm_size=qint(request, "shmsize", 0) or 0,
        memory=qint(request, "memory", 0) or 0,
        memory_swap=qint(request, "memswap", 0) or 0,
        cpu_shares=qint(request, "cpushares", 0) or 0,
        cpu_period=qint(request, "cpuperiod", 0) or 0,
        cpu_quota=qint(request, "cpuquota", 0) or 0,
        cpuset_cpus=request.query.get("cpusetcpus", ""),
        cpuset_mems=request.query.get("cpusetmems", ""),
        platform=request.query.get("platform", ""),
        squash=qbool(request, "squash"),
    )


class _StreamOutput:
    """The build's stream as Docker's JSON lines; silent but for errors with ``q=1``."""

    def __init__(self, lines: JsonLines, quiet: bool) -> None:
        self.lines = lines
        self.quiet = quiet

    async def stdout(self, text: str) -> None:
        if not self.quiet:
            await self.lines.send({"stream": text})

    async def stderr(self, text: str) -> None:
        if not self.quiet:
            await self.lines.send({"stream": f"{_STDERR_START}{text}{_STDERR_END}"})


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def build(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    options = build_options(request)
    quiet = qbool(request, "q")
    spool: tempfile.SpooledTemporaryFile[bytes] = tempfile.SpooledTemporaryFile(
        max_size=_SPOOL_IN_MEMORY, dir=str(engine.builds.dir)
    )
    try:
        async for chunk in request.content.iter_chunked(1024 * 1024):
            spool.write(chunk)
        spool.seek(0)
        job = await engine.builds.prepare(spool, options)  # type: ignore[arg-type]
    finally:
        spool.close()
    try:
        lines = await JsonLines.open(request)
        task = asyncio.create_task(engine.builds.run(job, _StreamOutput(lines, quiet)))
        # No write may be pending for minutes (a quiet RUN): notice a client that left.
        while not task.done():
            await asyncio.wait({task}, timeout=1.0)
            if not task.done() and _client_gone(request):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, SkiffError, OSError):
                    await task
                return lines.response
        try:
            image_id = task.result()
        except StepFailed as exc:
            await lines.send(
                {"errorDetail": {"code": exc.code, "message": exc.message}, "error": exc.message}
            )
        except SkiffError as exc:
            await lines.error(exc.message)
        except (ConnectionResetError, BrokenPipeError):
            return lines.response
        except Exception as exc:  # the stream has started: report in it, as dockerd does
            log.exception("build failed")
            await lines.error(f"internal error: {exc}")
        else:
            await lines.send({"aux": {"ID": image_id}})
            if quiet:
                await lines.send({"stream": image_id + "\n"})
            else:
                await lines.send({"stream": f"Successfully built {image_id.removeprefix('sha256:')[:12]}\n"})
                for tag in job.tags:
                    await lines.send({"stream": f"Successfully tagged {tag}\n"})
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            await lines.close()
        return lines.response
    finally:
        await asyncio.to_thread(engine.builds.discard, job)


async def prune(request: web.Request) -> web.Response:
    """``POST /build/prune``: the build cache and the step images only it kept."""
    deleted, reclaimed = await engine_of(request).builds.prune()
    return web.json_response({"CachesDeleted": deleted or None, "SpaceReclaimed": reclaimed})


def register(routes: Routes) -> None:
    routes.add("POST", "/build", build)
    routes.add("POST", "/build/prune", prune)
