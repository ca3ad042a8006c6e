"""Fixtures for every test directory: the run's one PostgreSQL and one SeaweedFS (tests/servers.py)."""

from tests.servers import module_postgres, session_postgres, session_seaweed  # noqa: F401
