"""Reading an index from outside the store, on either backend: what another process would see (committed rows)."""

from __future__ import annotations

import sqlite3
from typing import Any

from store.index.location import sqlite_path


def committed_rows(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """``sql`` (SQLite's ``?`` placeholders) on a connection of its own: only what was committed."""
    path = sqlite_path(url)
    if path is not None:
        with sqlite3.connect(path) as conn:
            return conn.execute(sql, params).fetchall()
    import psycopg

    from store.index.dialect import to_postgres

    with psycopg.connect(url, autocommit=True) as conn:
        return [tuple(row) for row in conn.execute(to_postgres(sql), params).fetchall()]
