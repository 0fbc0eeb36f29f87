"""Health checks with Docker's semantics: probes run as execs; status in State.Health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from skiff.engine.containers import ContainerService
from skiff.engine.execs import ExecService
from skiff.engine.model import Container, now_rfc3339
from skiff.errors import SkiffError
from skiff.types import HealthConfig

log = logging.getLogger("skiff.engine.health")

DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
MAX_LOG = 5


def probe_command(hc: HealthConfig) -> tuple[str, ...] | None:
    if not hc.test or hc.test[0] == "NONE":
        return None
    if hc.test[0] == "CMD-SHELL":
        return ("/bin/sh", "-c", " ".join(hc.test[1:]))
    if hc.test[0] == "CMD":
        return tuple(hc.test[1:])
    return tuple(hc.test)


class HealthMonitor:
    """One probe loop per running container that has a health check."""

    def __init__(self, containers: ContainerService, execs: ExecService) -> None:
        self.containers = containers
        self.execs = execs
        self._tasks: dict[str, asyncio.Task[None]] = {}
        containers.on_started.append(self.started)
        containers.on_exited.append(self.stopped)

    def started(self, c: Container) -> None:
        hc = c.spec.healthcheck
        if hc is None or probe_command(hc) is None:
            return
        self.stopped(c)
        self._tasks[c.id] = asyncio.create_task(self._loop(c.id, hc), name=f"health-{c.id[:12]}")

    def stopped(self, c: Container) -> None:
        task = self._tasks.pop(c.id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _loop(self, cid: str, hc: HealthConfig) -> None:
        interval = hc.interval / 1e9 if hc.interval else DEFAULT_INTERVAL
        timeout = hc.timeout / 1e9 if hc.timeout else DEFAULT_TIMEOUT
        retries = hc.retries or DEFAULT_RETRIES
        start_period = hc.start_period / 1e9
        start_interval = hc.start_interval / 1e9 if hc.start_interval else interval
        started = time.monotonic()
        cmd = probe_command(hc)
        assert cmd is not None
        while True:
            in_start_period = time.monotonic() - started < start_period
            await asyncio.sleep(start_interval if in_start_period else interval)
            begin = now_rfc3339()
            try:
                code, output = await self.execs.run(cid, cmd, timeout)
            except SkiffError as exc:
                code, output = -1, str(exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a probe must never kill the loop
                log.exception("health probe of %s failed", cid[:12])
                code, output = -1, str(exc)
            self._record(cid, code, output, begin, retries, time.monotonic() - started < start_period)

    def _record(self, cid: str, code: int, output: str, begin: str, retries: int, in_start: bool) -> None:
        c = self.containers._containers.get(cid)
        if c is None or c.state.status != "running":
            return
        entry: dict[str, object] = {"Start": begin, "End": now_rfc3339(), "ExitCode": code, "Output": output}
        history = (*c.state.health_log, entry)[-MAX_LOG:]
        status, streak = c.state.health_status, c.state.health_failing_streak
        if code == 0:
            status, streak = "healthy", 0
        elif not in_start:
            streak += 1
            if streak >= retries:
                status = "unhealthy"
        changed = status != c.state.health_status
        c = self.containers._save(
            c.with_state(health_status=status, health_failing_streak=streak, health_log=history)
        )
        if changed:
            with contextlib.suppress(SkiffError):
                self.containers.events.publish(
                    "container", f"health_status: {status}", c.id, image=c.spec.image, name=c.name
                )
