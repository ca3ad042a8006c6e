"""Who does the work that must happen once when several stores share one index: retention sweeps, deleting the
files they leave, timeline summaries.

On SQLite there is one store per index (ROOT/store.lock) and it always holds the lease. On PostgreSQL the lease
is a session advisory lock on a connection of its own: PostgreSQL lets it go the moment that connection ends
(the store stopped, crashed or was killed), and TCP keepalives set on the session end it within about 25 s
when the store's machine is gone without a word. Every other store tries for it every ``poll_s`` (5 s), so
the work is taken over within 30 s. The holder checks its connection as often: when it cannot reach the
server it stops the work at once (another store may take the lease meanwhile) and tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from store.index.location import redacted

log = logging.getLogger(__name__)

# pg_advisory_lock key (store/index/migrations.py SCHEMA_LOCK_KEY is ...0001).
MAINTENANCE_LOCK_KEY = 0x5348_5400_0002
POLL_S = 5.0
# One try's deadline, apart from the poll interval: a fast poll (tests) on a busy machine must not give up a
# healthy session because connecting and the lock query took longer than one interval.
ATTEMPT_S = 5.0
# How long stop() waits for a try in progress to end once cancelled (psycopg waits for the server to confirm
# a cancelled query); after that the connection is closed anyway, which also lets the lock go.
STOP_WAIT_S = 5.0
# Server side: a silent peer is dropped after idle + interval * count = 10 + 5 * 3 = 25 s; client side the same.
KEEPALIVE: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
SERVER_KEEPALIVE = ("SET tcp_keepalives_idle = 10", "SET tcp_keepalives_interval = 5", "SET tcp_keepalives_count = 3")


class Lease(Protocol):
    held: bool

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class SoleStore:
    """SQLite: this store is the only one on its index; the lease is always its."""

    held = True

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


class PostgresLease:
    def __init__(self, url: str, *, key: int = MAINTENANCE_LOCK_KEY, poll_s: float = POLL_S) -> None:
        self.url, self.key, self.poll_s = url, key, poll_s
        self.held = False
        self.acquired = 0  # times this store took the lease (for /health and tests)
        self._conn: Any = None  # psycopg.AsyncConnection, imported only for PostgreSQL
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Try once now (a single store holds the lease from its start), then keep trying in the background."""
        await self._attempt()
        self._task = asyncio.create_task(self._run(), name="maintenance-lease")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_WAIT_S)
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.warning("maintenance lease: the last try ended with %r", task.exception())
        await self._drop()  # closing the session lets the lock go

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            await self._attempt()

    async def _attempt(self) -> None:
        import psycopg

        try:
            await asyncio.wait_for(self._check_or_take(), max(self.poll_s, ATTEMPT_S))
        except (psycopg.Error, OSError, TimeoutError) as exc:
            if self.held:
                log.warning("maintenance lease lost (cannot reach the index at %s: %s); retention and "
                            "summaries stop here until this store holds it again", redacted(self.url),
                            " ".join(str(exc).split()) or type(exc).__name__)
            await self._drop()

    async def _check_or_take(self) -> None:
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=5,
                                                               **KEEPALIVE)
            for setting in SERVER_KEEPALIVE:
                await self._conn.execute(setting)
        if self.held:
            await self._conn.execute("SELECT 1")  # the session lives, so does its lock
            return
        cur = await self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
        row = await cur.fetchone()
        if row is not None and row[0]:
            self.held = True
            self.acquired += 1
            log.info("this store now holds the maintenance lease: it runs retention, file deletion and timeline "
                     "summaries for every store on the index")

    async def _drop(self) -> None:
        self.held = False
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: the server let the lock go with it
                await asyncio.wait_for(conn.close(), 5)


def lease_for(index_url: str | None) -> Lease:
    from store.index.location import is_postgres

    return PostgresLease(index_url) if index_url is not None and is_postgres(index_url) else SoleStore()
