"""What the replica holds, kept in ``ROOT/replica/state.sqlite3`` so that a store restarted after any crash goes on
where it stopped: the segments cursor (``cursor.SegmentCursor``) and a fingerprint of each event as last copied.

Written only after the objects it records were PUT, so a crash between the two copies them again (a PUT is
idempotent), never skips them. The file belongs to one replica URL and one index: opened for another replica it
starts over (the new replica gets everything).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from store.replica.cursor import SegmentCursor

STATE_DIR = "replica"
STATE_FILE = "state.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS above (id INTEGER PRIMARY KEY, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, digest INTEGER NOT NULL);
"""


@dataclass
class CursorRow:
    """The segment at ``upto`` when it was saved: if the index holds another there now, it is not the index the
    cursor was made for (rebuilt, or emptied and its ids used again)."""

    camera: str | None = None
    start_us: int | None = None


class ReplicaState:
    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self.path = path

    @classmethod
    def open(cls, root: Path, replica_url: str) -> ReplicaState:
        """Blocking. The state for ``replica_url`` (emptied when it was another replica's)."""
        directory = root / STATE_DIR
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / STATE_FILE
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.executescript(_SCHEMA)
            state = cls(conn, path)
            if state._get("replica") != replica_url:
                state._start_over(replica_url)
        except BaseException:
            conn.close()
            raise
        return state

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _get(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _start_over(self, replica_url: str) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM meta")
            conn.execute("DELETE FROM above")
            conn.execute("DELETE FROM events")
            conn.execute("INSERT INTO meta (key, value) VALUES ('replica', ?)", (replica_url,))

    @contextlib.contextmanager
    def _transaction(self):  # type: ignore[no-untyped-def]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def load_cursor(self) -> tuple[SegmentCursor, CursorRow]:
        with self._lock:
            upto = int(self._get("upto") or 0)
            camera, start = self._get("upto_camera"), self._get("upto_start_us")
            above = dict(self._conn.execute("SELECT id, size FROM above").fetchall())
        return SegmentCursor(upto, {int(i): int(s) for i, s in above.items()}), \
            CursorRow(camera, int(start) if start is not None else None)

    def save_cursor(self, cursor: SegmentCursor, at: CursorRow) -> None:
        values = {"upto": str(cursor.upto), "upto_camera": at.camera,
                  "upto_start_us": None if at.start_us is None else str(at.start_us)}
        with self._transaction() as conn:
            for key, value in values.items():
                if value is None:
                    conn.execute("DELETE FROM meta WHERE key = ?", (key,))
                else:
                    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
                                 "value = excluded.value", (key, value))
            conn.execute("DELETE FROM above")
            conn.executemany("INSERT INTO above (id, size) VALUES (?, ?)", sorted(cursor.above.items()))

    def load_events(self) -> dict[int, int]:
        with self._lock:
            return dict(self._conn.execute("SELECT id, digest FROM events").fetchall())

    def save_events(self, digests: dict[int, int]) -> None:
        with self._transaction() as conn:
            conn.executemany("INSERT INTO events (id, digest) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET "
                             "digest = excluded.digest", sorted(digests.items()))

    def forget_events(self) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM events")

    def marker_written(self) -> bool:
        with self._lock:
            return self._get("marker") == "1"

    def set_marker_written(self) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('marker', '1')")
