"""Container lifecycle through docker-py (the Engine API as a real client speaks it)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import docker
import pytest

from tests.daemon_fixture import Daemon


@pytest.fixture
def api(daemon: Daemon) -> Iterator[docker.APIClient]:
    client = daemon.client()
    made: list[str] = []
    client._skiff_made = made  # type: ignore[attr-defined]
    yield client
    for cid in made:
        try:
            client.remove_container(cid, force=True)
        except docker.errors.NotFound:
            pass


def create(api: docker.APIClient, *cmd: str, **kwargs: object) -> str:
    cid: str = api.create_container("busybox", list(cmd) or None, **kwargs)["Id"]
    api._skiff_made.append(cid)  # type: ignore[attr-defined]
    return cid


def test_ping_version_info(api: docker.APIClient) -> None:
    assert api.ping() is True
    version = api.version()
    assert version["ApiVersion"] == "1.41"
    assert version["MinAPIVersion"] == "1.24"
    info = api.info()
    assert info["OSType"] == "linux" and info["Driver"] == "overlay2"


def test_run_to_completion_exit_code_and_logs(api: docker.APIClient) -> None:
    cid = create(api, "sh", "-c", "echo out; echo err >&2; exit 3")
    api.start(cid)
    assert api.wait(cid, timeout=30)["StatusCode"] == 3
    assert api.logs(cid, stdout=True, stderr=False) == b"out\n"
    assert api.logs(cid, stdout=False, stderr=True) == b"err\n"
    state = api.inspect_container(cid)["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 3 and state["Running"] is False


def test_detached_container_stop_and_remove(api: docker.APIClient) -> None:
    # PID 1 only dies of SIGTERM if it handles it (the kernel ignores default dispositions for init).
    cid = create(api, "sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait")
    api.start(cid)
    info = api.inspect_container(cid)
    assert info["State"]["Running"] is True and info["State"]["Pid"] > 0
    assert cid in [c["Id"] for c in api.containers()]
    with pytest.raises(docker.errors.APIError) as err:
        api.remove_container(cid)
    assert err.value.status_code == 409
    start = time.monotonic()
    api.stop(cid, timeout=10)
    assert time.monotonic() - start < 5, "a graceful stop must not wait for the SIGKILL timeout"
    state = api.inspect_container(cid)["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 0
    api.remove_container(cid)
    with pytest.raises(docker.errors.NotFound):
        api.inspect_container(cid)


def test_stop_escalates_to_sigkill(api: docker.APIClient) -> None:
    cid = create(api, "sh", "-c", "trap '' TERM; while true; do sleep 0.1; done")
    api.start(cid)
    time.sleep(0.3)
    api.stop(cid, timeout=1)
    assert api.inspect_container(cid)["State"]["ExitCode"] == 137


def test_name_conflict_and_lookup_by_name(api: docker.APIClient) -> None:
    cid = create(api, "true", name="skiff-e2e-named")
    assert api.inspect_container("skiff-e2e-named")["Id"] == cid
    assert api.inspect_container(cid[:10])["Id"] == cid
    with pytest.raises(docker.errors.APIError) as err:
        create(api, "true", name="skiff-e2e-named")
    assert err.value.status_code == 409
    assert "is already in use" in str(err.value)


def test_unknown_image_and_container_are_404(api: docker.APIClient) -> None:
    with pytest.raises(docker.errors.NotFound):
        api.create_container("skiff-no-such-image:1", ["true"])
    with pytest.raises(docker.errors.NotFound) as err:
        api.inspect_container("skiff-no-such-container")
    assert "No such container: skiff-no-such-container" in str(err.value)


def test_bad_values_create_nothing(api: docker.APIClient) -> None:
    before = {c["Id"] for c in api.containers(all=True)}
    bad = [
        api.create_host_config(mem_limit=-5),
        api.create_host_config(restart_policy={"Name": "sometimes"}),
    ]
    for host_config in bad:
        with pytest.raises(docker.errors.APIError) as err:
            api.create_container("busybox", ["true"], host_config=host_config)
        assert err.value.status_code == 400
    with pytest.raises(docker.errors.APIError):
        api.create_container("busybox", ["true"], stop_signal="SIGNOPE")
    assert {c["Id"] for c in api.containers(all=True)} == before


def test_exec_output_and_exit_code(api: docker.APIClient) -> None:
    cid = create(api, "sleep", "300")
    api.start(cid)
    exec_id = api.exec_create(cid, ["sh", "-c", "echo from-exec; exit 7"])["Id"]
    assert api.exec_start(exec_id) == b"from-exec\n"
    info = api.exec_inspect(exec_id)
    assert info["ExitCode"] == 7 and info["Running"] is False


def test_attach_before_start_gets_all_output(api: docker.APIClient) -> None:
    cid = create(api, "sh", "-c", "for i in 1 2 3; do echo line$i; done")
    sock = api.attach_socket(cid, params={"stdout": 1, "stderr": 1, "stream": 1})
    api.start(cid)
    data = b""
    raw = sock._sock if hasattr(sock, "_sock") else sock
    raw.settimeout(20)
    while True:
        chunk = raw.recv(4096)
        if not chunk:
            break
        data += chunk
    # Non-TTY attach is multiplexed: 8-byte headers before each payload.
    payload = b""
    while data:
        size = int.from_bytes(data[4:8], "big")
        payload += data[8 : 8 + size]
        data = data[8 + size :]
    assert payload == b"line1\nline2\nline3\n"
    assert api.wait(cid, timeout=20)["StatusCode"] == 0


def test_stdin_is_delivered_and_eof_closes_it(api: docker.APIClient) -> None:
    # docker-py's create_container has no StdinOnce: send the body the docker CLI sends for `run -i`.
    body = {
        "Image": "busybox",
        "Cmd": ["sh", "-c", "cat; echo done"],
        "OpenStdin": True,
        "StdinOnce": True,
        "AttachStdin": True,
        "AttachStdout": True,
    }
    cid = api._result(api._post_json(api._url("/containers/create"), data=body), True)["Id"]
    api._skiff_made.append(cid)  # type: ignore[attr-defined]
    sock = api.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stream": 1})
    raw = sock._sock if hasattr(sock, "_sock") else sock
    api.start(cid)
    raw.sendall(b"hello\n")
    import socket as socket_mod

    raw.shutdown(socket_mod.SHUT_WR)
    raw.settimeout(20)
    data = b""
    while True:
        chunk = raw.recv(4096)
        if not chunk:
            break
        data += chunk
    assert b"hello\n" in data and b"done\n" in data
    assert api.wait(cid, timeout=20)["StatusCode"] == 0


def test_pause_unpause_restart_rename_update(api: docker.APIClient) -> None:
    cid = create(api, "sleep", "300", name="skiff-e2e-renameme")
    api.start(cid)
    api.pause(cid)
    assert api.inspect_container(cid)["State"]["Status"] == "paused"
    api.unpause(cid)
    assert api.inspect_container(cid)["State"]["Status"] == "running"
    pid = api.inspect_container(cid)["State"]["Pid"]
    api.restart(cid, timeout=1)
    assert api.inspect_container(cid)["State"]["Pid"] != pid
    api.rename(cid, "skiff-e2e-renamed")
    assert api.inspect_container("skiff-e2e-renamed")["Id"] == cid
    api.update_container(cid, mem_limit="96m", memswap_limit="-1")
    assert api.inspect_container(cid)["HostConfig"]["Memory"] == 96 * 1024 * 1024


def test_top_and_stats(api: docker.APIClient) -> None:
    cid = create(api, "sleep", "300", host_config=api.create_host_config(mem_limit="64m"))
    api.start(cid)
    top = api.top(cid)
    assert "PID" in top["Titles"]
    assert any("sleep" in " ".join(row) for row in top["Processes"])
    stats = api.stats(cid, stream=False)
    assert stats["memory_stats"]["limit"] == 64 * 1024 * 1024
    assert stats["memory_stats"]["usage"] > 0
    assert stats["pids_stats"]["current"] >= 1


def test_filters(api: docker.APIClient) -> None:
    a = create(api, "true", labels={"skiff-e2e": "filters", "role": "a"})
    b = create(api, "true", labels={"skiff-e2e": "filters", "role": "b"})
    found = api.containers(all=True, filters={"label": "skiff-e2e=filters"})
    assert {c["Id"] for c in found} == {a, b}
    found = api.containers(all=True, filters={"label": ["skiff-e2e=filters", "role=b"]})
    assert [c["Id"] for c in found] == [b]
    assert api.containers(all=True, filters={"status": "created", "id": a})[0]["Id"] == a


def test_concurrent_creates_of_one_name(api: docker.APIClient) -> None:
    import threading

    name = "skiff-e2e-race"
    results: list[str] = []
    errors: list[int] = []

    def attempt() -> None:
        try:
            results.append(api.create_container("busybox", ["true"], name=name)["Id"])
        except docker.errors.APIError as exc:
            errors.append(exc.status_code or 0)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    api._skiff_made.extend(results)  # type: ignore[attr-defined]
    assert len(results) == 1 and errors == [409] * 7
    # The losers' cleanup must not have released the winner's name.
    assert api.inspect_container(name)["Id"] == results[0]
