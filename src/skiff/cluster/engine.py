"""The node agent's engine client, under the name it first had: ``EngineClient`` (the protocol,
in ``skiff.cluster.agent``) and ``HttpEngine`` (``skiff.client.aio``)."""

from __future__ import annotations

from skiff.client.aio import HttpEngine
from skiff.cluster.agent import EngineClient

__all__ = ["EngineClient", "HttpEngine"]
