"""``skiff compose`` against skiffd (the shared suite in compose_suite.py)."""

from __future__ import annotations

import pytest

from tests.daemon_fixture import Daemon
from tests.e2e.compose_suite import ComposeSuite, Engine


class TestComposeOnSkiffd(ComposeSuite):
    @pytest.fixture
    def engine(self, daemon: Daemon) -> Engine:
        return Engine("skiffd", daemon.host)
