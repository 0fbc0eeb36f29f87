"""skiffd can die (kill -9) and come back: containers keep running under conmon."""

from __future__ import annotations

import signal
import time

from tests.daemon_fixture import bootstrap_busybox, running_daemon


def test_kill9_daemon_keeps_containers_and_records_exits() -> None:
    with running_daemon() as d:
        bootstrap_busybox(d)
        api = d.client()
        keeper = api.create_container(
            "busybox", ["sh", "-c", "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.2; done"]
        )["Id"]
        quitter = api.create_container("busybox", ["sh", "-c", "sleep 1.5; exit 42"])["Id"]
        api.start(keeper)
        api.start(quitter)
        pid = api.inspect_container(keeper)["State"]["Pid"]
        since = time.time()
        time.sleep(0.5)

        d.stop(signal.SIGKILL)
        time.sleep(2.5)  # the quitter exits while skiffd is down
        import os

        os.kill(pid, 0)  # still alive without its daemon
        d.start()
        api = d.client()

        info = api.inspect_container(keeper)
        assert info["State"]["Running"] is True and info["State"]["Pid"] == pid
        quit_info = api.inspect_container(quitter)
        assert quit_info["State"]["Status"] == "exited"
        assert quit_info["State"]["ExitCode"] == 42
        # conmon kept logging while skiffd was down: the counter has no gap.
        lines = api.logs(keeper).decode().split()
        numbers = [int(x[4:]) for x in lines if x.startswith("tick")]
        assert numbers == list(range(len(numbers))) and len(numbers) >= 10
        # Events persisted before the crash are still there.
        events = api.events(since=since - 5, until=time.time(), decode=True, filters={"container": keeper})
        assert "start" in [e["Action"] for e in events]
        api.stop(keeper, timeout=1)
        assert api.wait(keeper, timeout=10)["StatusCode"] in (137, 143)


def test_sigterm_leaves_containers_running_and_restart_policy_resumes() -> None:
    with running_daemon() as d:
        bootstrap_busybox(d)
        api = d.client()
        cid = api.create_container(
            "busybox", ["sleep", "300"], host_config=api.create_host_config(restart_policy={"Name": "always"})
        )["Id"]
        api.start(cid)
        pid = api.inspect_container(cid)["State"]["Pid"]
        d.stop(signal.SIGTERM)
        import os

        os.kill(pid, 0)
        os.kill(pid, signal.SIGKILL)  # the container dies while skiffd is down
        time.sleep(0.5)
        d.start()
        api = d.client()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            info = api.inspect_container(cid)
            if info["State"]["Running"] and info["State"]["Pid"] != pid:
                break
            time.sleep(0.2)
        assert info["State"]["Running"] is True
        assert info["State"]["Pid"] != pid


def _runc_inits_for(cid: str) -> list[int]:
    """Host pids of processes whose cgroup path names this container (a waiting `runc init`)."""
    import pathlib

    pids = []
    for proc in pathlib.Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if cid in (proc / "cgroup").read_text():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def test_crash_between_runtime_create_and_start_is_recovered() -> None:
    import docker
    import pytest

    with running_daemon() as d:
        bootstrap_busybox(d)
        api = d.client()
        cid = api.create_container("busybox", ["sleep", "300"])["Id"]
        d.stop()
        d.start(env={"SKIFF_FAILPOINTS": "start-after-runtime-create"})
        with pytest.raises((docker.errors.APIError, Exception)):
            d.client().start(cid)
        d.proc.wait(10)  # type: ignore[union-attr]
        d.proc = None
        assert _runc_inits_for(cid), "the failpoint should leave a created runtime container behind"

        d.start()
        api = d.client()
        assert _runc_inits_for(cid) == []
        assert api.inspect_container(cid)["State"]["Running"] is False
        api.start(cid)  # the container is usable again
        assert api.inspect_container(cid)["State"]["Running"] is True
        api.remove_container(cid, force=True)


def test_health_checks_resume_after_kill9() -> None:
    with running_daemon() as d:
        bootstrap_busybox(d)
        api = d.client()
        healthcheck = {"Test": ["CMD-SHELL", "test ! -e /tmp/sick"], "Interval": 300_000_000, "Retries": 1}
        cid = api.create_container("busybox", ["sleep", "300"], healthcheck=healthcheck)["Id"]
        api.start(cid)

        def health(client: object) -> str:
            return str(client.inspect_container(cid)["State"]["Health"]["Status"])  # type: ignore[attr-defined]

        deadline = time.monotonic() + 15
        while health(api) != "healthy" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert health(api) == "healthy"
        d.stop(signal.SIGKILL)
        d.start()
        api = d.client()
        api.exec_start(api.exec_create(cid, ["touch", "/tmp/sick"])["Id"])
        deadline = time.monotonic() + 15
        while health(api) != "unhealthy" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert health(api) == "unhealthy", "probes must run again after the restart"
        api.remove_container(cid, force=True)
