"""ExecService: ``docker exec`` instances (kept in memory, as dockerd does)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
from dataclasses import dataclass, replace
from typing import Any

from skiff.engine.containers import ContainerService
from skiff.engine.merge import merge_env
from skiff.engine.model import ExecConfig
from skiff.errors import Conflict, NotFound, SkiffError
from skiff.runtime.runc import ExecProcess
from skiff.runtime.spec import effective_capabilities, resolve_user

log = logging.getLogger("skiff.engine.exec")


@dataclass
class ExecState:
    """What ``GET /exec/{id}/json`` reports."""

    config: ExecConfig
    running: bool = False
    started: bool = False
    exit_code: int | None = None
    pid: int = 0
    process: ExecProcess | None = None
    reaper: asyncio.Task[None] | None = None


class ExecService:
    """Create, start and inspect exec instances in running containers."""

    def __init__(self, containers: ContainerService) -> None:
        self.containers = containers
        self._execs: dict[str, ExecState] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def create(self, ref: str, config: ExecConfig) -> ExecConfig:
        c = self.containers.get(ref)
        if c.state.status == "paused":
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if c.state.status != "running":
            raise Conflict(f"Container {c.id} is not running")
        if not config.cmd:
            raise Conflict("No exec command specified")
        config = replace(config, id=secrets.token_hex(32), container_id=c.id)
        self._execs[config.id] = ExecState(config)
        self.containers.events.publish(
            "container",
            f"exec_create: {' '.join(config.cmd)}",
            c.id,
            image=c.spec.image,
            name=c.name,
            execID=config.id,
        )
        return config

    def get(self, exec_id: str) -> ExecState:
        state = self._execs.get(exec_id)
        if state is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return state

    def _process(self, config: ExecConfig) -> dict[str, Any]:
        c = self.containers.get(config.container_id)
        bundle = self.containers.bundle(c.id)
        base: dict[str, Any] = json.loads((bundle / "config.json").read_text())["process"]
        process = dict(base)
        process["args"] = list(config.cmd)
        process["env"] = list(merge_env(tuple(base.get("env", ())), config.env))
        process["terminal"] = config.tty
        if config.working_dir:
            process["cwd"] = config.working_dir
        if config.user:
            uid, gid, gids = resolve_user(bundle / "rootfs", config.user)
            process["user"] = {"uid": uid, "gid": gid, "additionalGids": gids}
        if config.privileged:
            caps = effective_capabilities((), (), privileged=True)
            process["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
        process.pop("consoleSize", None)
        if config.tty and config.console_size != (0, 0):
            process["consoleSize"] = {"height": config.console_size[0], "width": config.console_size[1]}
        return process

    def check_startable(self, exec_id: str) -> ExecState:
        """Raise what ``start`` would raise before any process exists."""
        state = self.get(exec_id)
        if state.started:
            raise Conflict(f"Error: Exec command {exec_id} has already run")
        c = self.containers.get(state.config.container_id)
        if c.state.status != "running":
            raise Conflict(f"Container {c.id} is not running")
        return state

    async def start(self, exec_id: str, *, tty: bool | None = None, detach: bool = False) -> ExecProcess:
        state = self.check_startable(exec_id)
        config = state.config
        c = self.containers.get(config.container_id)
        use_tty = config.tty if tty is None else tty
        state.started = True
        try:
            process = await self.containers.runtime.exec(
                c.id, self._process(replace(config, tty=use_tty)), tty=use_tty, detach=detach
            )
        except SkiffError as exc:
            # As dockerd: an exec that cannot start exits 127 (no such command) or 126.
            text = exc.message.lower()
            state.exit_code = 127 if "not found" in text or "no such file" in text else 126
            state.running = False
            raise
        state.process, state.running, state.pid = process, True, process.pid
        self.containers.events.publish(
            "container",
            f"exec_start: {' '.join(config.cmd)}",
            c.id,
            image=c.spec.image,
            name=c.name,
            execID=exec_id,
        )
        task = asyncio.create_task(self._reap(state))
        state.reaper = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return process

    async def wait(self, exec_id: str) -> int | None:
        """The exit code once recorded (so an inspect right after sees it)."""
        state = self.get(exec_id)
        if state.reaper is not None:
            await asyncio.shield(state.reaper)
        return state.exit_code

    async def _reap(self, state: ExecState) -> None:
        assert state.process is not None
        try:
            code = await state.process.wait()
        except SkiffError as exc:
            log.warning("exec %s: %s", state.config.id[:12], exc)
            code = 126
        state.exit_code, state.running = code, False
        c = self.containers._containers.get(state.config.container_id)
        if c is not None:
            self.containers.events.publish(
                "container",
                "exec_die",
                c.id,
                image=c.spec.image,
                name=c.name,
                execID=state.config.id,
                exitCode=str(code),
            )

    async def resize(self, exec_id: str, height: int, width: int) -> None:
        state = self.get(exec_id)
        if state.process is None or not state.running:
            raise Conflict(f"Exec {exec_id} is not running")
        state.process.resize(height, width)

    async def run(self, ref: str, cmd: tuple[str, ...], timeout: float) -> tuple[int, str]:
        """Run a command to completion (health checks); returns (exit code, combined output)."""
        config = self.create(ref, ExecConfig(id="", container_id="", cmd=cmd))
        try:
            process = await self.start(config.id)
            chunks: list[bytes] = []

            async def collect() -> int:
                while True:
                    item = await process.read()
                    if item is None:
                        break
                    chunks.append(item[1])
                code: int = await process.wait()
                return code

            try:
                code = await asyncio.wait_for(collect(), timeout)
            except TimeoutError:
                # runc reports the host pid of the exec'd process.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                process.close()
                return -1, f"Health check exceeded timeout ({timeout:g}s)"
            return code, b"".join(chunks).decode(errors="replace")[-4096:]
        finally:
            self._execs.pop(config.id, None)
