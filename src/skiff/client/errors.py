"""Transport errors -> ``skiff.errors``, in exactly one place.

docker-py raises ``docker.errors.APIError`` (with the HTTP status and the daemon's
``{"message": ..}``) and requests raises ``ConnectionError`` when nothing listens.
Everything the client raises is a ``SkiffError``; ``is_daemon_error`` tells the CLI
whether the daemon said it (docker prints "Error response from daemon: ..." then).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import docker.errors
import requests.exceptions

from skiff import errors


class DaemonError(errors.SkiffError):
    """Marker base: the daemon answered with an error status."""


class DaemonInvalidArgument(errors.InvalidArgument, DaemonError):
    """The daemon rejected the request (400)."""


class DaemonNotFound(errors.NotFound, DaemonError):
    """The daemon has no such object (404)."""


class DaemonNotModified(errors.NotModified, DaemonError):
    """The object already is in the requested state (304)."""


class DaemonConflict(errors.Conflict, DaemonError):
    """The request clashes with the daemon's state (409)."""


class DaemonUnauthorized(errors.Unauthorized, DaemonError):
    """The daemon (or a registry behind it) refused the credentials (401)."""


class DaemonForbidden(errors.Forbidden, DaemonError):
    """The daemon refused the operation (403)."""


class DaemonUnavailable(errors.Unavailable, DaemonError):
    """The daemon cannot serve the request now (503)."""


class DaemonFailure(errors.RuntimeFailure, DaemonError):
    """Any other daemon error (500 and unknown statuses)."""


_BY_STATUS: dict[int, type[DaemonError]] = {
    304: DaemonNotModified,
    400: DaemonInvalidArgument,
    401: DaemonUnauthorized,
    403: DaemonForbidden,
    404: DaemonNotFound,
    409: DaemonConflict,
    503: DaemonUnavailable,
}


def _daemon_error(status: int, message: str) -> DaemonError:
    err = _BY_STATUS.get(status, DaemonFailure)(message)
    err.status = status
    return err


def is_daemon_error(exc: BaseException) -> bool:
    """True when the daemon itself reported ``exc`` (not a local or connection problem)."""
    return isinstance(exc, DaemonError)


def api_error_message(exc: docker.errors.APIError) -> str:
    """The daemon's own message (its JSON ``message``), without docker-py's decoration."""
    explanation = exc.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    if explanation:
        return str(explanation).strip()
    return str(exc)


def unavailable(host: str) -> errors.Unavailable:
    """The error for "nothing answers at ``host``"."""
    return errors.Unavailable(f"Cannot connect to the skiff daemon at {host}. Is skiffd running?")


def tls_reason(exc: BaseException) -> str:
    """The OpenSSL reason deep inside requests' and urllib3's wrappers ("certificate verify failed:
    self-signed certificate", "tlsv13 alert certificate required")."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        cur = todo.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError) and cur.verify_message:
            return f"certificate verify failed: {cur.verify_message}"
        if isinstance(cur, ssl.SSLError) and cur.reason:
            return str(cur.reason).lower().replace("_", " ")
        linked = [*cur.args, getattr(cur, "reason", None), cur.__cause__, cur.__context__]
        todo += [e for e in linked if isinstance(e, BaseException)]
    return str(exc)


@contextmanager
def mapped_errors(host: str) -> Iterator[None]:
    """Run a transport call, converting its failures to ``skiff.errors``."""
    try:
        yield
    except docker.errors.APIError as exc:
        status = exc.status_code or 500
        raise _daemon_error(status, api_error_message(exc)) from exc
    except requests.exceptions.SSLError as exc:
        raise errors.Unavailable(
            f"TLS error talking to the skiff daemon at {host}: {tls_reason(exc)}"
        ) from exc
    except requests.exceptions.ConnectionError as exc:
        raise unavailable(host) from exc
    except docker.errors.DockerException as exc:
        raise errors.Unavailable(f"{exc} (daemon at {host})") from exc


def stream_error(message: str) -> errors.SkiffError:
    """An ``{"errorDetail": ..}`` line inside a 200 progress stream."""
    return _daemon_error(500, message)
