"""Frozen dataclasses that cross layer boundaries.

The API layer converts Docker JSON into these and back; nothing below ``api/`` sees
Docker's JSON field names or untyped dicts of unknown shape.
"""

from skiff.types.container import (
    ContainerSpec,
    ContainerState,
    DeviceMapping,
    HealthConfig,
    HostConfig,
    Mount,
    RestartPolicy,
    ThrottleDevice,
    Ulimit,
)
from skiff.types.events import Event
from skiff.types.image import HistoryEntry, ImageConfig, ImageRecord

__all__ = [
    "ContainerSpec",
    "ContainerState",
    "DeviceMapping",
    "Event",
    "HealthConfig",
    "HistoryEntry",
    "HostConfig",
    "ImageConfig",
    "ImageRecord",
    "Mount",
    "RestartPolicy",
    "ThrottleDevice",
    "Ulimit",
]
