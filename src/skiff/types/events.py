"""Events, shaped after Docker's /events messages."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    """One engine event: ``type`` is container|image|network|volume|daemon."""

    type: str
    action: str  # create, start, die, oom, kill, stop, pause, unpause, destroy, health_status: healthy, ...
    actor_id: str
    attributes: dict[str, str] = field(default_factory=dict)
    time_nano: int = 0
    scope: str = "local"
