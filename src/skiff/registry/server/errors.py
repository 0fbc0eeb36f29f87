"""The registry's errors: the distribution spec's codes, each with its HTTP status.

Every failure a handler means to report is a :class:`RegistryError`; the app's middleware turns it
into ``{"errors": [{"code", "message", "detail"}]}`` in one place (``server/app.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# The codes of the OCI distribution spec (and Docker's registry API), with the status each
# usually travels with. ``UNKNOWN`` is distribution's code for an internal error.
STATUS_OF: Mapping[str, int] = {
    "BLOB_UNKNOWN": 404,
    "BLOB_UPLOAD_INVALID": 400,
    "BLOB_UPLOAD_UNKNOWN": 404,
    "DIGEST_INVALID": 400,
    "MANIFEST_BLOB_UNKNOWN": 400,
    "MANIFEST_INVALID": 400,
    "MANIFEST_UNKNOWN": 404,
    "NAME_INVALID": 400,
    "NAME_UNKNOWN": 404,
    "SIZE_INVALID": 400,
    "UNAUTHORIZED": 401,
    "DENIED": 403,
    "UNSUPPORTED": 405,
    "TOOMANYREQUESTS": 429,
    "UNKNOWN": 500,
}


class RegistryError(Exception):
    """One spec error: ``code`` (a key of STATUS_OF), a message for people, optional detail."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        detail: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if code not in STATUS_OF:
            raise ValueError(f"unknown registry error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else STATUS_OF[code]
        self.detail = detail
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        """The JSON body the spec prescribes."""
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return json.dumps({"errors": [entry]}).encode()

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def blob_unknown(digest: str) -> RegistryError:
    return RegistryError("BLOB_UNKNOWN", "blob unknown to registry", detail={"digest": digest})


def manifest_unknown(reference: str) -> RegistryError:
    return RegistryError("MANIFEST_UNKNOWN", "manifest unknown", detail={"reference": reference})


def name_unknown(name: str) -> RegistryError:
    return RegistryError("NAME_UNKNOWN", "repository name not known to registry", detail={"name": name})


def upload_unknown(upload_id: str) -> RegistryError:
    return RegistryError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", detail={"id": upload_id})
