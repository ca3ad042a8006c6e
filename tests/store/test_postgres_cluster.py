"""The test PostgreSQL itself: it starts, answers on loopback, survives a crash-stop, and leaves nothing behind."""

from __future__ import annotations

from tests.store.postgres import running_postgres


def test_a_throwaway_cluster_answers_keeps_data_across_a_crash_and_is_removed() -> None:
    with running_postgres() as cluster:
        url = cluster.create_database()
        database = url.rsplit("/", 1)[1]
        cluster.psql("CREATE TABLE kept (n integer); INSERT INTO kept VALUES (42)", database)
        cluster.stop("immediate")  # no checkpoint: what a power cut leaves
        cluster.start()
        assert cluster.psql("SELECT n FROM kept", database).strip() == "42"
        assert cluster.psql("SHOW listen_addresses").strip() == "127.0.0.1"
        directory = cluster.directory
    assert not directory.exists()


def test_missing_binaries_fail_with_how_to_install_unless_skipping_is_asked_for(monkeypatch) -> None:
    import pytest

    from sht import local_servers
    from tests.store import postgres

    monkeypatch.setattr(local_servers.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(local_servers.shutil, "which", lambda name: None)
    monkeypatch.delenv("SHT_ALLOW_MISSING_SERVERS", raising=False)
    with pytest.raises(pytest.fail.Exception, match="apt-get install postgresql"):
        postgres.postgres_bindir()
    monkeypatch.setenv("SHT_ALLOW_MISSING_SERVERS", "1")
    with pytest.raises(pytest.skip.Exception, match="apt-get install postgresql"):
        postgres.postgres_bindir()
