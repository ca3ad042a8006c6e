"""Fixtures for every test directory: the run's one PostgreSQL and one SeaweedFS (tests/servers.py)."""

from __future__ import annotations

import pytest

from tests.servers import module_postgres, session_postgres, session_seaweed, start_early  # noqa: F401


def pytest_collection_finish(session: pytest.Session) -> None:
    start_early(session.items)


def pytest_unconfigure(config: pytest.Config) -> None:
    from tests.servers import EARLY_SEAWEED

    EARLY_SEAWEED.stop()  # started, but no test that asked for it ran (-x, an interrupt)
