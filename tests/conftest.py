"""Shared pytest setup: tiers, root detection, the test daemon."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_fixture import Daemon, bootstrap_busybox, running_daemon

IS_ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_root = pytest.mark.skip(reason="needs root (real kernel objects)")
    for item in items:
        path = Path(str(item.fspath))
        if "integration" in path.parts or "e2e" in path.parts:
            item.add_marker(pytest.mark.root)
            if not IS_ROOT:
                item.add_marker(skip_root)


@pytest.fixture(scope="session")
def daemon() -> Iterator[Daemon]:
    """One skiffd for the whole session, with busybox:latest bootstrapped."""
    with running_daemon() as d:
        bootstrap_busybox(d)
        yield d
