"""Transport errors -> skiff.errors in one place; host resolution; multiplexed frame decoding."""

from __future__ import annotations

import docker.errors
import pytest
import requests

from skiff import errors
from skiff.cli.containers import start_failure_code
from skiff.cli.context import error_text
from skiff.client import DEFAULT_HOST, is_daemon_error, resolve_host
from skiff.client.errors import mapped_errors
from skiff.client.streams import FrameDecoder, encode_frame


def _api_error(status: int, message: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(message, response=response, explanation=message)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, errors.InvalidArgument),
        (403, errors.Forbidden),
        (404, errors.NotFound),
        (409, errors.Conflict),
        (500, errors.RuntimeFailure),
        (503, errors.Unavailable),
        (418, errors.RuntimeFailure),
    ],
)
def test_status_maps_to_error_class(status: int, cls: type[errors.SkiffError]) -> None:
    with pytest.raises(cls) as info, mapped_errors(DEFAULT_HOST):
        raise _api_error(status, "No such container: x")
    assert info.value.message == "No such container: x"
    assert is_daemon_error(info.value)
    assert error_text(info.value) == "Error response from daemon: No such container: x"


def test_connection_error_is_unavailable_and_not_a_daemon_error() -> None:
    with pytest.raises(errors.Unavailable) as info, mapped_errors("unix:///tmp/skiff-x.sock"):
        raise requests.exceptions.ConnectionError("refused")
    assert not is_daemon_error(info.value)
    assert (
        error_text(info.value)
        == "Cannot connect to the skiff daemon at unix:///tmp/skiff-x.sock. Is skiffd running?"
    )


def test_local_errors_pass_through_unchanged() -> None:
    with pytest.raises(errors.InvalidArgument) as info, mapped_errors(DEFAULT_HOST):
        raise errors.InvalidArgument("bad flag")
    assert not is_daemon_error(info.value)


def test_resolve_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SKIFF_HOST", raising=False)
    assert resolve_host(None) == "unix:///run/skiff/skiff.sock"
    monkeypatch.setenv("SKIFF_HOST", "tcp://127.0.0.1:2376")
    assert resolve_host(None) == "tcp://127.0.0.1:2376"
    assert resolve_host("unix:///tmp/skiff.sock") == "unix:///tmp/skiff.sock"
    assert resolve_host("/tmp/skiff.sock") == "unix:///tmp/skiff.sock"
    with pytest.raises(errors.InvalidArgument):
        resolve_host("ftp://x")


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ('OCI runtime create failed: exec: "foo": executable file not found in $PATH', 127),
        ("exec: /app: no such file or directory", 127),
        ("exec /etc/passwd: permission denied", 126),
        ("failed to set up network", 125),
    ],
)
def test_run_exit_code_for_start_errors(message: str, code: int) -> None:
    assert start_failure_code(message) == code


def test_frame_decoder_handles_split_frames() -> None:
    data = encode_frame(1, b"hello ") + encode_frame(2, b"oops") + encode_frame(1, b"world")
    decoder = FrameDecoder()
    frames = []
    for i in range(0, len(data), 5):  # arbitrary network chunking
        frames.extend(decoder.feed(data[i : i + 5]))
    assert frames == [(1, b"hello "), (2, b"oops"), (1, b"world")]
    assert decoder.pending == 0
