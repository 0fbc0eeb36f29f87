"""System routes: /_ping, /version, /info, /events, /system/df."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
from typing import Any

from aiohttp import web

from skiff import __version__
from skiff.api.app import API_VERSION, MIN_API_VERSION, Routes, engine_of, qfilters, timestamp_ns
from skiff.api.distribution import registry_info
from skiff.api.filters import event_matches
from skiff.types.codec import to_plain


def _ping_headers() -> dict[str, str]:
    return {
        "Api-Version": API_VERSION,
        "Ostype": "linux",
        "Docker-Experimental": "false",
        "Builder-Version": "1",
        "Swarm": "inactive",
        "Cache-Control": "no-cache, no-store, must-revalidate",
        "Pragma": "no-cache",
    }


async def ping(request: web.Request) -> web.Response:
    if request.method == "HEAD":
        return web.Response(headers=_ping_headers(), content_type="text/plain")
    return web.Response(text="OK", headers=_ping_headers())


def _kernel() -> str:
    return platform.release()


async def version(request: web.Request) -> web.Response:
    engine = engine_of(request)
    go_version = f"python{platform.python_version()}"
    arch = _go_arch()
    details = {
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": go_version,
        "Os": "linux",
        "Arch": arch,
        "KernelVersion": _kernel(),
        "BuildTime": "",
        "Experimental": "false",
    }
    runtime_version = await _runtime_version(engine.config.runtime)
    top = {k: v for k, v in details.items() if k != "Experimental"}  # the same facts at top level
    return web.json_response(
        {
            "Platform": {"Name": f"skiff {__version__}"},
            "Components": [
                {"Name": "Engine", "Version": __version__, "Details": details},
                {"Name": engine.config.runtime, "Version": runtime_version, "Details": {"GitCommit": ""}},
            ],
            "Version": __version__,
            **top,
        }
    )


def _go_arch() -> str:
    """Go's GOARCH spelling, which clients compare against (amd64, arm64, ...)."""
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "armv7l": "arm"}.get(machine, machine)


_RUNTIME_VERSIONS: dict[str, str] = {}


async def _runtime_version(runtime: str) -> str:
    """``runc --version``'s first line's version, asked once per daemon."""
    if runtime not in _RUNTIME_VERSIONS:
        try:
            proc = await asyncio.create_subprocess_exec(
                runtime, "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
            )
            out, _ = await proc.communicate()
            first = out.decode(errors="replace").splitlines()[0] if out else ""
            _RUNTIME_VERSIONS[runtime] = first.split()[-1] if first else ""
        except OSError:
            _RUNTIME_VERSIONS[runtime] = ""
    return _RUNTIME_VERSIONS[runtime]


def _cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


async def info(request: web.Request) -> web.Response:
    engine = engine_of(request)
    containers = engine.containers.list()
    running = sum(1 for c in containers if c.state.status == "running")
    paused = sum(1 for c in containers if c.state.status == "paused")
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return web.json_response(
        {
            "ID": "skiff",
            "Containers": len(containers),
            "ContainersRunning": running,
            "ContainersPaused": paused,
            "ContainersStopped": len(containers) - running - paused,
            "Images": len(engine.images.list()),
            "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
            "Plugins": {
                "Volume": ["local"],
                "Network": ["host", "null"],
                "Authorization": None,
                "Log": ["k8s-file"],
            },
            "MemoryLimit": True,
            "SwapLimit": True,
            "KernelMemory": False,
            "CpuCfsPeriod": True,
            "CpuCfsQuota": True,
            "CPUShares": True,
            "CPUSet": True,
            "PidsLimit": True,
            "IPv4Forwarding": True,
            "BridgeNfIptables": False,
            "BridgeNfIp6tables": False,
            "Debug": False,
            "NFd": len(os.listdir("/proc/self/fd")),
            "OomKillDisable": True,
            "NGoroutines": 0,
            "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime()),
            "LoggingDriver": "k8s-file",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": _cgroup_version(),
            "NEventsListener": 0,
            "KernelVersion": _kernel(),
            "OperatingSystem": _os_name(),
            "OSVersion": "",
            "OSType": "linux",
            "Architecture": platform.machine(),
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": registry_info(engine.config.registry),
            "NCPU": os.cpu_count() or 1,
            "MemTotal": mem,
            "DockerRootDir": str(engine.config.root),
            "HttpProxy": "",
            "HttpsProxy": "",
            "NoProxy": "",
            "Name": platform.node(),
            "Labels": [],
            "ExperimentalBuild": False,
            "ServerVersion": __version__,
            "Runtimes": {"runc": {"path": "runc"}, "crun": {"path": "crun"}},
            "DefaultRuntime": engine.config.runtime,
            "Swarm": {
                "NodeID": "",
                "NodeAddr": "",
                "LocalNodeState": "inactive",
                "ControlAvailable": False,
                "Error": "",
                "RemoteManagers": None,
            },
            "LiveRestoreEnabled": True,
            "Isolation": "",
            "InitBinary": "docker-init",
            "ContainerdCommit": {"ID": "", "Expected": ""},
            "RuncCommit": {"ID": "", "Expected": ""},
            "InitCommit": {"ID": "", "Expected": ""},
            "SecurityOptions": [],  # no seccomp profile yet
            "Warnings": None,
        }
    )


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


_parse_ts = timestamp_ns


def event_json(event: Any) -> dict[str, Any]:
    plain = to_plain(event)
    return {
        "status": event.action if event.type == "container" or event.type == "image" else None,
        "id": event.actor_id,
        "from": event.attributes.get("image", ""),
        "Type": event.type,
        "Action": event.action,
        "Actor": {"ID": event.actor_id, "Attributes": plain["attributes"]},
        "scope": event.scope,
        "time": event.time_nano // 1_000_000_000,
        "timeNano": event.time_nano,
    }


async def events(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    since = _parse_ts(request.query.get("since"))
    until = _parse_ts(request.query.get("until"))
    filters = qfilters(request)
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    async for event in engine.events.subscribe(since, until):
        if not event_matches(event, filters):
            continue
        body = event_json(event)
        if body["status"] is None:
            del body["status"], body["id"], body["from"]
        await response.write(json.dumps(body).encode() + b"\n")
    await response.write_eof()
    return response


async def system_df(request: web.Request) -> web.Response:
    engine = engine_of(request)
    from skiff.api.render import container_summary, image_summary
    from skiff.api.volumes import volumes_usage

    now = time.time()
    volumes = await volumes_usage(engine.volumes)
    return web.json_response(
        {
            "LayersSize": sum(i.size for i in engine.images.list()),
            "Images": [image_summary(i) for i in engine.images.list()],
            "Containers": [container_summary(c, now) for c in engine.containers.list()],
            "Volumes": volumes,
            "BuildCache": [],
        }
    )


def register(routes: Routes) -> None:
    routes.app.router.add_route("GET", "/_ping", ping)
    routes.app.router.add_route("HEAD", "/_ping", ping)
    routes.app.router.add_route("GET", r"/v{version:\d+\.\d+}/_ping", ping)
    routes.app.router.add_route("HEAD", r"/v{version:\d+\.\d+}/_ping", ping)
    routes.add("GET", "/version", version)
    routes.add("GET", "/info", info)
    routes.add("GET", "/events", events)
    routes.add("GET", "/system/df", system_df)
