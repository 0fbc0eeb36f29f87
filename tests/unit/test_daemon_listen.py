"""skiffd's listeners: -H parsing, the TLS rules (dockerd's), and the TLS protocol on loopback.

The protocol tests run a real aiohttp app behind ``TLSSite`` on 127.0.0.1 with certificates
made by trustme, and talk to it with the stdlib ``ssl`` client: no root, no daemon.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from skiff.api.streams import hijack
from skiff.daemon.config import DaemonConfig, merge
from skiff.daemon.listen import (
    ListenPlan,
    TCPAddress,
    TLSSite,
    UnixAddress,
    parse_address,
    plan_listeners,
)
from skiff.daemon.main import build_config, parse_args
from skiff.daemon.tls import PLAIN_HTTP_ANSWER
from skiff.errors import InvalidArgument

# -- addresses -----------------------------------------------------------------------------


def test_parse_unix_and_tcp_addresses() -> None:
    assert parse_address("unix:///run/x.sock", tls=False) == UnixAddress(Path("/run/x.sock"))
    assert parse_address("tcp://127.0.0.1:2400", tls=True) == TCPAddress("127.0.0.1", 2400)
    assert parse_address("tcp://[::1]:2400", tls=True) == TCPAddress("::1", 2400)
    assert str(TCPAddress("::1", 2400)) == "tcp://[::1]:2400"
    assert parse_address("tcp://:2376", tls=True) == TCPAddress("", 2376)  # every interface


def test_tcp_default_port_follows_tls_as_in_dockerd() -> None:
    assert parse_address("tcp://10.0.0.1", tls=True).port == 2376  # type: ignore[union-attr]
    assert parse_address("tcp://10.0.0.1", tls=False).port == 2375  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "text", ["fd://", "http://1.2.3.4:80", "unix://relative.sock", "tcp://h:99999", "tcp://h:1/path", "/x"]
)
def test_bad_addresses_are_refused_clearly(text: str) -> None:
    with pytest.raises(InvalidArgument, match="address"):
        parse_address(text, tls=True)


# -- the TLS rules -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.pem, server cert/key for 127.0.0.1, client cert/key, and a stranger's cert/key."""
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.cert_chain_pems[0].write_to_path(str(d / "server-cert.pem"))
    server.private_key_pem.write_to_path(str(d / "server-key.pem"))
    client = ca.issue_cert("client")
    client.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    client.private_key_pem.write_to_path(str(d / "key.pem"))
    stranger = trustme.CA().issue_cert("stranger")
    stranger.cert_chain_pems[0].write_to_path(str(d / "stranger-cert.pem"))
    stranger.private_key_pem.write_to_path(str(d / "stranger-key.pem"))
    return d


def _config(pki: Path, **settings: object) -> DaemonConfig:
    return merge(DaemonConfig(), {"hosts": ["unix:///run/t.sock", "tcp://127.0.0.1:2376"], **settings})


def test_plain_tcp_is_refused_without_an_explicit_opt_in() -> None:
    config = merge(DaemonConfig(), {"hosts": ["tcp://127.0.0.1:2375"]})
    with pytest.raises(
        InvalidArgument, match=r"refusing to listen on tcp://127.0.0.1:2375 without TLS.*--tls=false"
    ):
        plan_listeners(config)


@pytest.mark.parametrize("opt_in", [{"tls": False}, {"tlsverify": False}])
def test_plain_tcp_with_the_opt_in(opt_in: dict[str, bool]) -> None:
    plan = plan_listeners(merge(DaemonConfig(), {"hosts": ["tcp://127.0.0.1"], **opt_in}))
    assert plan.tls is None and plan.context is None
    assert plan.tcp == [TCPAddress("127.0.0.1", 2375)]


def test_unix_only_needs_no_tls() -> None:
    assert plan_listeners(DaemonConfig()) == ListenPlan((UnixAddress(Path("/run/skiff/skiff.sock")),), None)


def test_tlsverify_requires_client_certificates_from_the_ca(pki: Path) -> None:
    plan = plan_listeners(
        _config(
            pki,
            tlsverify=True,
            tlscacert=str(pki / "ca.pem"),
            tlscert=str(pki / "server-cert.pem"),
            tlskey=str(pki / "server-key.pem"),
        )
    )
    assert plan.tls is not None and plan.tls.verify_clients
    assert plan.context is not None and plan.context.verify_mode == ssl.CERT_REQUIRED
    assert plan.context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_tls_alone_does_not_verify_clients(pki: Path) -> None:
    plan = plan_listeners(
        _config(pki, tls=True, tlscert=str(pki / "server-cert.pem"), tlskey=str(pki / "server-key.pem"))
    )
    assert plan.context is not None and plan.context.verify_mode == ssl.CERT_NONE


def test_missing_files_default_to_the_cert_dir_and_fail_clearly(pki: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=rf"cannot read {tmp_path}/cert.pem"):
        plan_listeners(_config(pki, tlsverify=True), cert_dir=tmp_path)
    for name in ("ca.pem",):
        (tmp_path / name).write_bytes((pki / name).read_bytes())
    (tmp_path / "cert.pem").write_bytes((pki / "server-cert.pem").read_bytes())
    (tmp_path / "key.pem").write_bytes((pki / "server-key.pem").read_bytes())
    plan = plan_listeners(_config(pki, tlsverify=True), cert_dir=tmp_path)
    assert plan.tls is not None and plan.tls.ca == tmp_path / "ca.pem"


def test_a_key_that_does_not_match_is_refused(pki: Path) -> None:
    with pytest.raises(InvalidArgument, match="cannot load certificate"):
        plan_listeners(
            _config(pki, tls=True, tlscert=str(pki / "server-cert.pem"), tlskey=str(pki / "key.pem"))
        )


def test_flags_and_config_keys() -> None:
    args = parse_args(["--tls=false", "-H", "tcp://127.0.0.1:1"])
    assert args.tls is False and args.tlsverify is None
    config = build_config(parse_args(["--tlsverify", "--tlscacert", "/c/ca.pem", "-H", "unix:///x"]))
    assert config.tlsverify is True and config.tls is None and config.tlscacert == Path("/c/ca.pem")
    with pytest.raises(SystemExit):
        parse_args(["--tls=maybe"])
    assert merge(DaemonConfig(), {"tlsverify": True, "tlscert": "/c/cert.pem"}).tlscert == Path("/c/cert.pem")
    with pytest.raises(InvalidArgument, match="true or false"):
        merge(DaemonConfig(), {"tls": "yes"})


# -- the TLS protocol ----------------------------------------------------------------------


async def _echo_after_eof(request: web.Request) -> web.StreamResponse:
    """Hijack, read the client's bytes until its EOF, then answer how many and close."""
    response, raw = await hijack(request, multiplexed=False)
    got = b""
    while (chunk := await raw.read()) is not None:
        got += chunk
    await raw.write(b"got " + got + b" then eof\n")
    raw.close()
    return response


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="OK")


def _serve(pki: Path, verify: bool, client: Callable[[int], object]) -> object:
    """Run ``client(port)`` in a thread against a TLS site on 127.0.0.1; return its result."""

    async def main() -> object:
        app = web.Application()
        app.router.add_get("/_ping", _hello)
        app.router.add_post("/attach", _echo_after_eof)
        runner = web.AppRunner(app)
        await runner.setup()
        plan = plan_listeners(
            _config(
                pki,
                tlsverify=verify,
                tls=True,
                tlscacert=str(pki / "ca.pem"),
                tlscert=str(pki / "server-cert.pem"),
                tlskey=str(pki / "server-key.pem"),
            )
        )
        assert plan.context is not None
        site = TLSSite(runner, TCPAddress("127.0.0.1", 0), plan.context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            return await asyncio.wait_for(asyncio.to_thread(client, port), 30)
        finally:
            await runner.cleanup()

    return asyncio.run(main())


def _client_context(pki: Path, cert: str | None = "cert.pem", key: str = "key.pem") -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert:
        ctx.load_cert_chain(str(pki / cert), str(pki / key))
    return ctx


def _recv_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_keep_alive_requests_over_tls(pki: Path) -> None:
    def client(port: int) -> bytes:
        with (
            socket.create_connection(("127.0.0.1", port)) as plain,
            _client_context(pki).wrap_socket(plain, server_hostname="127.0.0.1") as tls,
        ):
            req = b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n"
            tls.sendall(req + req)  # pipelined, one connection
            data = b""
            while data.count(b"\r\n\r\nOK") < 2:
                data += tls.recv(65536)
            return data

    data = _serve(pki, True, client)
    assert isinstance(data, bytes) and data.count(b"HTTP/1.1 200 OK") == 2


def test_client_half_close_keeps_output_flowing(pki: Path) -> None:
    """A TCP FIN after stdin (docker-py's way) ends the input only; the answer still arrives."""

    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port)) as plain:
            tls = _client_context(pki).wrap_socket(plain, server_hostname="127.0.0.1")
            tls.sendall(b"POST /attach HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += tls.recv(1)
            assert head.startswith(b"HTTP/1.1 101")
            tls.sendall(b"stdin-bytes")
            socket.socket.shutdown(tls, socket.SHUT_WR)  # FIN, the TLS session stays
            return _recv_all(tls)

    assert _serve(pki, True, client) == b"got stdin-bytes then eof\n"


def test_client_without_certificate_is_refused(pki: Path) -> None:
    def client(port: int) -> str:
        with socket.create_connection(("127.0.0.1", port)) as plain:
            try:
                with _client_context(pki, cert=None).wrap_socket(plain, server_hostname="127.0.0.1") as tls:
                    tls.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
                    return "answered: " + tls.recv(100).decode()
            except (ssl.SSLError, ConnectionError) as exc:
                return f"refused: {exc}"

    result = _serve(pki, True, client)
    assert isinstance(result, str) and result.startswith("refused") and "certificate required" in result


def test_certificate_from_another_ca_is_refused(pki: Path) -> None:
    def client(port: int) -> str:
        ctx = _client_context(pki, cert="stranger-cert.pem", key="stranger-key.pem")
        with socket.create_connection(("127.0.0.1", port)) as plain:
            try:
                with ctx.wrap_socket(plain, server_hostname="127.0.0.1") as tls:
                    tls.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
                    return "answered: " + tls.recv(100).decode()
            except (ssl.SSLError, ConnectionError) as exc:
                return f"refused: {exc}"

    result = _serve(pki, True, client)
    assert isinstance(result, str) and result.startswith("refused") and "unknown ca" in result


def test_tls_without_verify_serves_clients_without_certificates(pki: Path) -> None:
    def client(port: int) -> bytes:
        with (
            socket.create_connection(("127.0.0.1", port)) as plain,
            _client_context(pki, cert=None).wrap_socket(plain, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return _recv_all(tls)

    data = _serve(pki, False, client)
    assert isinstance(data, bytes) and data.startswith(b"HTTP/1.1 200") and data.endswith(b"OK")


def test_plain_http_on_the_tls_port_gets_gos_400(pki: Path) -> None:
    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port)) as plain:
            plain.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
            return _recv_all(plain)

    assert _serve(pki, True, client) == PLAIN_HTTP_ANSWER


def test_config_file_uses_daemon_json_keys_and_flags_win(tmp_path: Path) -> None:
    settings = {"hosts": ["tcp://127.0.0.1:2376"], "tlsverify": True, "tlscacert": "/c/ca.pem"}
    path = tmp_path / "skiffd.json"
    path.write_text(json.dumps(settings))
    config = build_config(parse_args(["--config", str(path)]))
    assert (config.hosts, config.tlsverify, config.tlscacert) == (
        ("tcp://127.0.0.1:2376",),
        True,
        Path("/c/ca.pem"),
    )
    assert build_config(parse_args(["--config", str(path), "--tlsverify=false"])).tlsverify is False
