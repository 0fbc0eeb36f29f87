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
from skiff.types.image import HistoryEntry, HistoryItem, ImageConfig, ImageRecord
from skiff.types.network import Endpoint, EndpointConfig, NetworkRecord, NetworkState, PortBinding

__all__ = [
    "ContainerSpec",
    "ContainerState",
    "DeviceMapping",
    "Endpoint",
    "EndpointConfig",
    "Event",
    "HealthConfig",
    "HistoryEntry",
    "HistoryItem",
    "HostConfig",
    "ImageConfig",
    "ImageRecord",
    "Mount",
    "NetworkRecord",
    "NetworkState",
    "PortBinding",
    "RestartPolicy",
    "ThrottleDevice",
    "Ulimit",
]
