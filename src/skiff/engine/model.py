"""The engine's own records: a container as skiffd keeps it (persisted as JSON in SQLite)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from skiff.types import ContainerSpec, ContainerState, NetworkState
from skiff.types.codec import decode, to_plain
from skiff.types.volume import MountPoint


def now_rfc3339() -> str:
    """Current time in Docker's RFC 3339 form with nanosecond-width fraction."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}000Z"


@dataclass(frozen=True)
class ExecConfig:
    """One exec instance (``docker exec``), kept in memory only, as Docker does."""

    id: str
    container_id: str
    cmd: tuple[str, ...]
    tty: bool = False
    attach_stdin: bool = False
    attach_stdout: bool = True
    attach_stderr: bool = True
    env: tuple[str, ...] = ()
    user: str = ""
    working_dir: str = ""
    privileged: bool = False
    detach_keys: str = ""
    console_size: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class Container:
    """A container: what was asked for (``spec``, merged with the image) and what happened."""

    id: str
    name: str
    created: str
    image_id: str
    spec: ContainerSpec
    state: ContainerState = ContainerState()
    path: str = ""  # the command's executable (Docker's top-level "Path")
    args: tuple[str, ...] = ()
    hostname: str = ""
    cgroups_path: str = ""
    # The user stopped it (docker stop/kill): restart policies other than "always" leave it alone.
    manually_stopped: bool = False
    has_been_started: bool = False
    labels_image: dict[str, str] = field(default_factory=dict)
    network: NetworkState = NetworkState()  # owned by the network service
    # Volumes, binds and --mount tmpfs as resolved at create (owned by the volume service).
    mount_points: tuple[MountPoint, ...] = ()

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def running(self) -> bool:
        return self.state.status in ("running", "paused", "restarting")

    def with_state(self, **changes: object) -> Container:
        return replace(self, state=replace(self.state, **changes))  # type: ignore[arg-type]

    def to_json(self) -> str:
        return json.dumps(to_plain(self), separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> Container:
        return decode(Container, json.loads(text))
