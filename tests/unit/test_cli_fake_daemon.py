"""The CLI end to end against a fake daemon: canned Docker-shaped JSON on a unix socket in tmp."""

from __future__ import annotations

import json
import socketserver
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import click
import pytest
from click.testing import CliRunner, Result

from skiff.cli.main import run

CID = "f" * 64
CONTAINER_JSON = {
    "Id": CID,
    "Name": "/web",
    "State": {"Status": "running", "Pid": 42, "ExitCode": 0},
    "Config": {"Env": ["PATH=/bin", "A=1"], "Tty": False, "Image": "busybox"},
    "NetworkSettings": {"IPAddress": "10.88.0.2"},
}
LIST = [
    {
        "Id": CID,
        "Names": ["/web"],
        "Image": "busybox",
        "Command": "sleep 1000",
        "Created": 1_700_000_000,
        "Ports": [],
        "Labels": {},
        "State": "running",
        "Status": "Up 3 seconds",
    },
]
IMAGES = [
    {"Id": "sha256:" + "ab" * 32, "RepoTags": ["busybox:latest"], "Created": 1_700_000_000, "Size": 4_261_234}
]

Route = Callable[[dict[str, list[str]], bytes], tuple[int, Any]]


class FakeDaemon:
    """Routes ``(method, path without /vX.Y)`` to canned answers and records every request."""

    def __init__(self, socket_path: Path) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.requests: list[tuple[str, str, dict[str, list[str]], bytes]] = []
        daemon = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                url = urlsplit(self.path)
                path = url.path
                if path.startswith("/v1."):
                    path = "/" + path.split("/", 2)[2]
                query = parse_qs(url.query)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                daemon.requests.append((self.command, path, query, body))
                route = daemon.routes.get((self.command, path))
                status, payload = (
                    route(query, body) if route else (404, {"message": f"page not found: {path}"})
                )
                if isinstance(payload, bytes):
                    data = payload
                else:
                    data = b"" if payload is None else json.dumps(payload).encode()
                if status == 101:
                    # Hijack: headers and the first output in one write, then close the stream.
                    head = b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
                    self.wfile.write(head + b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n" + data)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_HEAD = _serve

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

            def get_request(self) -> Any:
                sock, _ = super().get_request()
                return sock, ("local", 0)  # BaseHTTPRequestHandler wants a (host, port) address

            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client may hang up before its answer is written (the CLI drops a pending
                # request once the container's output ends); only other errors are printed,
                # on the stderr the tests capture.
                if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                    return
                super().handle_error(request, client_address)

        self.server = Server(str(socket_path), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def route(self, method: str, path: str, status: int, payload: Any) -> None:
        self.routes[(method, path)] = lambda q, b: (status, payload)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[FakeDaemon]:
    fake = FakeDaemon(tmp_path / "skiff-test.sock")
    try:
        yield fake
    finally:
        fake.close()


def _entry_fn(host: str, args: tuple[str, ...]) -> None:
    # run() is the real entry point (error wording, exit codes); CliRunner captures its output.
    raise SystemExit(run(["-H", host, *args]))


_entry = click.Command(
    "entry",
    params=[click.Argument(["host"]), click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
    callback=_entry_fn,
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)


def invoke(daemon: FakeDaemon, args: list[str]) -> Result:
    return CliRunner().invoke(
        _entry, [f"unix://{daemon.server.server_address}", *args], catch_exceptions=False
    )


def test_ps_lists_containers(daemon: FakeDaemon) -> None:
    daemon.route("GET", "/containers/json", 200, LIST)
    result = invoke(daemon, ["ps"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("CONTAINER ID   IMAGE     COMMAND")
    assert lines[1].startswith('ffffffffffff   busybox   "sleep 1000"')
    assert lines[1].endswith("Up 3 seconds             web")
    assert daemon.requests[-1][2]["all"] == ["0"]


def test_ps_quiet_all_and_filter(daemon: FakeDaemon) -> None:
    daemon.route("GET", "/containers/json", 200, LIST)
    result = invoke(daemon, ["ps", "-aq", "--filter", "name=web", "--no-trunc"])
    assert result.output == CID + "\n"
    query = daemon.requests[-1][2]
    assert query["all"] == ["1"]
    assert json.loads(query["filters"][0]) == {"name": ["web"]}


def test_images_table(daemon: FakeDaemon) -> None:
    daemon.route("GET", "/images/json", 200, IMAGES)
    result = invoke(daemon, ["images"])
    assert result.exit_code == 0
    header = result.output.splitlines()[0]
    assert header.startswith("REPOSITORY   TAG       IMAGE ID       CREATED ") and header.endswith("   SIZE")
    assert "busybox      latest    abababababab" in result.output and "4.26MB" in result.output


def test_inspect_format(daemon: FakeDaemon) -> None:
    daemon.route("GET", "/containers/web/json", 200, CONTAINER_JSON)
    result = invoke(
        daemon,
        ["inspect", "-f", "{{.State.Status}} {{.NetworkSettings.IPAddress}} {{json .Config.Env}}", "web"],
    )
    assert result.output == 'running 10.88.0.2 ["PATH=/bin","A=1"]\n'


def test_inspect_falls_back_to_image_then_fails(daemon: FakeDaemon) -> None:
    daemon.route("GET", "/images/busybox/json", 200, {"Id": "sha256:ab", "RepoTags": ["busybox:latest"]})
    result = invoke(daemon, ["inspect", "-f", "{{.Id}}", "busybox"])
    assert result.output == "sha256:ab\n"
    result = invoke(daemon, ["inspect", "nothing"])
    assert result.exit_code == 1
    assert "Error: No such object: nothing" in result.output or "No such object: nothing" in result.output


def test_rm_reports_each_failure_and_exits_1(daemon: FakeDaemon) -> None:
    daemon.route("DELETE", "/containers/web", 204, None)
    daemon.route("DELETE", "/containers/gone", 404, {"message": "No such container: gone"})
    result = invoke(daemon, ["rm", "-f", "web", "gone"])
    assert result.exit_code == 1
    assert "web\n" in result.output
    assert "Error response from daemon: No such container: gone" in result.output
    assert daemon.requests[0][2] == {"v": ["False"], "link": ["False"], "force": ["True"]} or daemon.requests[
        0
    ][2]["force"] in (["True"], ["1"], ["true"])


def test_run_detached_pulls_missing_image_then_starts(daemon: FakeDaemon) -> None:
    calls = {"create": 0}

    def create(query: dict[str, list[str]], body: bytes) -> tuple[int, Any]:
        calls["create"] += 1
        if calls["create"] == 1:
            return 404, {"message": "No such image: busybox:latest"}
        return 201, {"Id": CID, "Warnings": []}

    daemon.routes[("POST", "/containers/create")] = create
    daemon.route("POST", "/images/create", 200, {"status": "Pulled"})
    daemon.route("POST", f"/containers/{CID}/start", 204, None)
    result = invoke(daemon, ["run", "-d", "--name", "web", "-m", "64m", "busybox", "sleep", "1"])
    assert result.exit_code == 0, result.output
    assert "Unable to find image 'busybox:latest' locally" in result.output
    assert result.output.endswith(CID + "\n")
    create_body = json.loads(daemon.requests[0][3])
    assert create_body["HostConfig"]["Memory"] == 64 << 20 and create_body["Cmd"] == ["sleep", "1"]
    assert daemon.requests[0][2]["name"] == ["web"]
    assert [r[1] for r in daemon.requests] == [
        "/containers/create",
        "/images/create",
        "/containers/create",
        f"/containers/{CID}/start",
    ]


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ('exec: "nope": executable file not found in $PATH', 127),
        ("exec /bin/x: permission denied", 126),
        ("cgroup setup failed", 125),
    ],
)
def test_run_start_failure_exit_codes(daemon: FakeDaemon, message: str, code: int) -> None:
    daemon.route("POST", "/containers/create", 201, {"Id": CID, "Warnings": []})
    daemon.route("POST", f"/containers/{CID}/start", 500, {"message": message})
    result = invoke(daemon, ["run", "-d", "busybox", "nope"])
    assert result.exit_code == code
    assert f"Error response from daemon: {message}" in result.output


def test_bad_flag_sends_nothing(daemon: FakeDaemon) -> None:
    result = invoke(daemon, ["run", "--memory", "lots", "busybox"])
    assert result.exit_code == 125
    assert "invalid size: 'lots'" in result.output and "See 'skiff run --help'." in result.output
    assert daemon.requests == []


def test_daemon_down_message(tmp_path: Path) -> None:
    sock = tmp_path / "absent.sock"
    runner = CliRunner()
    result = runner.invoke(_entry, [f"unix://{sock}", "ps"], catch_exceptions=False)
    assert result.exit_code == 1
    assert f"Cannot connect to the skiff daemon at unix://{sock}. Is skiffd running?" in result.output


def test_run_attached_demuxes_output_and_exits_with_container_code(
    daemon: FakeDaemon, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    from skiff.client.streams import encode_frame

    daemon.route("POST", "/containers/create", 201, {"Id": CID, "Warnings": []})
    daemon.route("POST", f"/containers/{CID}/wait", 200, {"StatusCode": 3, "Error": None})
    daemon.route("POST", f"/containers/{CID}/start", 204, None)
    # The hijacked attach: 101, then frames right behind the headers (same segment), then close.
    daemon.routes[("POST", f"/containers/{CID}/attach")] = lambda q, b: (
        101,
        encode_frame(1, b"out line\n") + encode_frame(2, b"err line\n"),
    )
    code = run(["-H", f"unix://{daemon.server.server_address}", "run", "--rm", "busybox", "sh", "-c", "x"])
    captured = capfdbinary.readouterr()
    assert code == 3
    assert captured.out == b"out line\n"
    assert captured.err == b"err line\n"
    paths = [r[1] for r in daemon.requests]
    assert paths[:2] == ["/containers/create", f"/containers/{CID}/attach"]
    assert paths.index(f"/containers/{CID}/wait") < paths.index(f"/containers/{CID}/start")
    wait_query = next(r[2] for r in daemon.requests if r[1].endswith("/wait"))
    assert wait_query["condition"] == ["removed"]
