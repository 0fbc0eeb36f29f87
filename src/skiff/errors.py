"""One error hierarchy for every layer.

Each class maps to exactly one HTTP status (in ``api/errors.py``) and one CLI exit
behaviour (in ``cli/``). Messages are written for the user: say what is wrong and,
where it helps, what to do. Keep Docker's wording where clients match on it
("No such container: x", "Conflict. The container name ...").
"""

from __future__ import annotations


class SkiffError(Exception):
    """Base of every error skiff raises on purpose."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(SkiffError):
    """Bad input from the user: a flag value, a reference, a request body (HTTP 400)."""

    status = 400


class NotFound(SkiffError):
    """An image, container, exec, blob, ... that does not exist (HTTP 404)."""

    status = 404


class NotModified(SkiffError):
    """The request asked for a state the object is already in (HTTP 304)."""

    status = 304


class Conflict(SkiffError):
    """The operation clashes with current state: name in use, image in use, running (HTTP 409)."""

    status = 409


class AlreadyExists(Conflict):
    """An object with that name or key already exists (HTTP 409)."""


class Unauthorized(SkiffError):
    """Credentials are missing or wrong, e.g. for a registry (HTTP 401)."""

    status = 401


class Forbidden(SkiffError):
    """The operation is not allowed on this object (HTTP 403)."""

    status = 403


class Unavailable(SkiffError):
    """A dependency (runtime, store, network) cannot serve the request now (HTTP 503)."""

    status = 503


class RuntimeFailure(SkiffError):
    """runc or conmon failed; the message carries the runtime's own words (HTTP 500)."""

    status = 500


class DataCorruption(SkiffError):
    """Content did not match its digest or size; nothing was committed (HTTP 500)."""

    status = 500
