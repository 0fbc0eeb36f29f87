"""Limits, OOM, restart policies and health checks, end to end through docker-py."""

from __future__ import annotations

import json
import time

import docker
import pytest

from tests.daemon_fixture import Daemon


def _run(api: docker.APIClient, cmd: list[str], **kwargs: object) -> str:
    cid: str = api.create_container("busybox", cmd, **kwargs)["Id"]
    api.start(cid)
    return cid


def _wait_for(predicate, timeout: float = 30.0, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


def test_oom_kill_is_reported(daemon: Daemon) -> None:
    api = daemon.client()
    since = time.time()
    # A shell variable that doubles until it passes the 16 MiB limit.
    hog = "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"
    cid = _run(
        api, ["sh", "-c", hog], host_config=api.create_host_config(mem_limit="16m", memswap_limit="16m")
    )
    try:
        assert api.wait(cid, timeout=60)["StatusCode"] == 137
        state = api.inspect_container(cid)["State"]
        assert state["OOMKilled"] is True
        events = api.events(
            since=since, until=time.time() + 1, decode=True, filters={"container": cid, "event": "oom"}
        )
        assert any(e["Action"] == "oom" for e in events)
    finally:
        api.remove_container(cid, force=True)


def test_pids_limit_contains_fork_bomb(daemon: Daemon) -> None:
    api = daemon.client()
    # PID 1 must outlive the bomb (its exit would end the container): it execs into sleep.
    bomb = "b() { b | b & }; b; exec sleep 60"
    cid = _run(api, ["sh", "-c", bomb], host_config=api.create_host_config(pids_limit=32))
    try:
        time.sleep(2)
        pids = api.stats(cid, stream=False)["pids_stats"]
        assert pids["limit"] == 32
        assert 1 <= pids["current"] <= 32
    finally:
        api.remove_container(cid, force=True)
    with pytest.raises(docker.errors.NotFound):
        api.inspect_container(cid)


def test_pids_limit_is_enforced_while_running(daemon: Daemon) -> None:
    api = daemon.client()
    cid = _run(
        api,
        ["sh", "-c", "(for i in $(seq 1 100); do sleep 60 & done) 2>/dev/null; exec sleep 60"],
        host_config=api.create_host_config(pids_limit=16),
    )
    try:
        time.sleep(1.5)
        assert api.stats(cid, stream=False)["pids_stats"]["current"] <= 16
        assert api.stats(cid, stream=False)["pids_stats"]["limit"] == 16
    finally:
        api.remove_container(cid, force=True)


def test_restart_on_failure_counts_and_stops(daemon: Daemon) -> None:
    api = daemon.client()
    policy = {"Name": "on-failure", "MaximumRetryCount": 2}
    cid = _run(api, ["sh", "-c", "exit 1"], host_config=api.create_host_config(restart_policy=policy))
    try:
        info = _wait_for(
            lambda: (
                (i := api.inspect_container(cid))["RestartCount"] == 2
                and i["State"]["Status"] == "exited"
                and i
            )
        )
        assert info["State"]["ExitCode"] == 1
    finally:
        api.remove_container(cid, force=True)


def test_restart_always_restarts_but_not_after_stop(daemon: Daemon) -> None:
    api = daemon.client()
    cid = _run(
        api,
        ["sh", "-c", "sleep 0.2; exit 0"],
        host_config=api.create_host_config(restart_policy={"Name": "always"}),
    )
    try:
        _wait_for(lambda: api.inspect_container(cid)["RestartCount"] >= 2)
        api.stop(cid, timeout=1)
        count = api.inspect_container(cid)["RestartCount"]
        time.sleep(1.5)
        info = api.inspect_container(cid)
        assert info["RestartCount"] == count and info["State"]["Running"] is False
    finally:
        api.remove_container(cid, force=True)


def test_health_check_turns_healthy_then_unhealthy(daemon: Daemon) -> None:
    api = daemon.client()
    healthcheck = {
        "Test": ["CMD-SHELL", "test ! -e /tmp/sick"],
        "Interval": 300_000_000,
        "Timeout": 2_000_000_000,
        "Retries": 2,
    }
    cid = _run(api, ["sleep", "300"], healthcheck=healthcheck)
    try:
        assert api.inspect_container(cid)["State"]["Health"]["Status"] in ("starting", "healthy")
        _wait_for(lambda: api.inspect_container(cid)["State"]["Health"]["Status"] == "healthy")
        assert "(healthy)" in api.containers(filters={"id": cid})[0]["Status"]
        api.exec_start(api.exec_create(cid, ["touch", "/tmp/sick"])["Id"])
        info = _wait_for(
            lambda: (i := api.inspect_container(cid))["State"]["Health"]["Status"] == "unhealthy" and i
        )
        assert info["State"]["Health"]["FailingStreak"] >= 2
        assert api.containers(filters={"health": "unhealthy", "id": cid})
    finally:
        api.remove_container(cid, force=True)


def test_events_stream_lifecycle(daemon: Daemon) -> None:
    api = daemon.client()
    since = time.time()
    cid = _run(api, ["true"])
    api.wait(cid, timeout=30)
    api.remove_container(cid)
    events = list(api.events(since=since, until=time.time() + 0.5, decode=True, filters={"container": cid}))
    actions = [e["Action"] for e in events]
    assert actions[:3] == ["create", "start", "die"]
    assert actions[-1] == "destroy"
    die = next(e for e in events if e["Action"] == "die")
    assert die["Actor"]["Attributes"]["exitCode"] == "0"
    json.dumps(events)


@pytest.mark.parametrize("flag", ["cap_drop", "read_only"])
def test_security_flags_are_applied(daemon: Daemon, flag: str) -> None:
    api = daemon.client()
    if flag == "cap_drop":
        hc = api.create_host_config(cap_drop=["CHOWN"])
        cmd = ["sh", "-c", "chown nobody /tmp && echo changed || echo denied"]
        expected = b"denied"
    else:
        hc = api.create_host_config(read_only=True)
        cmd = ["sh", "-c", "touch /newfile && echo wrote || echo readonly"]
        expected = b"readonly"
    cid = _run(api, cmd, host_config=hc)
    try:
        api.wait(cid, timeout=30)
        assert expected in api.logs(cid)
    finally:
        api.remove_container(cid, force=True)
