"""The index on PostgreSQL (``sht store --index postgresql://...``), through psycopg 3 (the ``cluster`` extra).

``PostgresConnection`` offers what the store's code uses of an aiosqlite connection, with the same meaning,
so every query module runs unchanged on both:

- ``execute`` (awaited, or ``async with``) returns a cursor with ``fetchone``, ``fetchall``, ``rowcount`` and
  ``lastrowid``; ``executemany``; ``commit``; ``rollback``; ``close`` (not ``executescript``: the schema is
  prepared statement by statement, store/index/migrations.py);
- transactions as Python's sqlite3 makes them: an INSERT, UPDATE or DELETE outside a transaction begins one, and
  it lasts until ``commit`` or ``rollback``; everything else runs on its own;
- SQL as SQLite takes it (store/index/dialect.py translates); PRAGMAs are SQLite's tuning and do nothing here.

Writes go through one connection (the store's tasks share it, as they share the SQLite one, and
``store.index.db.transaction`` keeps them apart); a query made while no transaction is open runs on one of up to
``POOL_SIZE`` other connections (``_Readers``), so searches and timelines never wait behind ingest. A query made
while one is open runs inside it, as on SQLite's single connection. A connection that broke (the server
restarted) is replaced on the next statement outside a transaction; the one inside fails, and is rolled back by
whoever began it.

The server out of reach (down, restarting, a lost connection, a deadlock or serialization failure: psycopg's
OperationalError) is ``IndexUnavailable``, an OSError: ingest answers it with ``retry: true``. While the server
is down every statement fails at once with its reason (nothing waits for a connection that cannot come), and the
first statement after it is back connects again: a store recovers by itself, however long the outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any

import psycopg
from psycopg.adapt import Loader
from psycopg.pq import TransactionStatus

from store.index.dialect import to_postgres
from store.index.location import IndexUnavailable, redacted

Row = tuple[Any, ...]
POOL_SIZE = 4  # connections for queries outside transactions: searches, timelines, thumbnails at once
CONNECT_TIMEOUT_S = 10
POOL_WAIT_S = 5.0  # a query waits this long for one of the POOL_SIZE connections when all are busy
_DML = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
_INSERT_INTO = re.compile(r"\s*INSERT\s+INTO\s+(\w+)", re.IGNORECASE)


class _NumericAsNumber(Loader):
    """SUM of BIGINT is NUMERIC in PostgreSQL: read it as SQLite gives it, an int (or a float if fractional)."""

    def load(self, data: Any) -> int | float:
        value = Decimal(bytes(data).decode())
        return int(value) if value == value.to_integral_value() else float(value)


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    conn.adapters.register_loader("numeric", _NumericAsNumber)


class Cursor:
    """A statement's outcome, read whole when it ran (the store's queries are bounded pages)."""

    def __init__(self, rows: list[Row], rowcount: int, lastrowid: int | None) -> None:
        self._rows, self.rowcount, self.lastrowid = rows, rowcount, lastrowid
        self._next = 0

    async def fetchone(self) -> Row | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    async def fetchall(self) -> list[Row]:
        rest, self._next = self._rows[self._next:], len(self._rows)
        return rest

    async def close(self) -> None:
        pass


class _Statement:
    """What ``execute`` returns: await it for the cursor, or use it with ``async with`` (as aiosqlite's)."""

    def __init__(self, run: Any) -> None:
        self._run = run
        self._cursor: Cursor | None = None

    def __await__(self) -> Any:
        return self._run.__await__()

    async def __aenter__(self) -> Cursor:
        self._cursor = await self._run
        return self._cursor

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        pass


class _Readers:
    """Up to ``size`` autocommit connections for the queries made outside transactions, made when needed and
    kept while they work.

    Not psycopg_pool: its reconnection backs off without a ceiling (1 s doubling for five minutes), so after a
    minute's outage it may try again only a minute later, and meanwhile every query waits its whole timeout for a
    connection that cannot come. Here a query takes an idle connection or makes one, failing at once with the
    server's own reason when it cannot; the first query after the server is back connects.
    """

    def __init__(self, connect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]], size: int,
                 wait_s: float) -> None:
        self._connect = connect
        self._size, self._wait_s = size, wait_s
        self._slots = asyncio.Semaphore(size)
        self._idle: list[psycopg.AsyncConnection[Any]] = []

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        try:
            async with asyncio.timeout(self._wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise psycopg.OperationalError(f"all {self._size} query connections stayed busy for "
                                           f"{self._wait_s:g} s") from None
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            conn = self._idle.pop() if self._idle else await self._connect()
            yield conn
        finally:
            if conn is not None:
                await self._put_back(conn)
            self._slots.release()

    async def _put_back(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE:
            self._idle.append(conn)
            return
        await conn.close()  # broken, or left mid-statement (the query was cancelled)
        if conn.broken:  # the server went away: the idle ones went with it, so none is handed out to fail
            await self.close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()


class PostgresConnection:
    dialect = "postgresql"  # store.index.db.dialect reads it

    def __init__(self, url: str, identity: dict[str, str], pool_size: int = POOL_SIZE) -> None:
        self.url = url
        self.identity = identity  # table -> its identity column, what lastrowid reads (dialect.identity_columns)
        self._writer: psycopg.AsyncConnection[Any] | None = None
        self._readers = _Readers(self._new_connection, pool_size, POOL_WAIT_S)
        self._lock = asyncio.Lock()  # one statement at a time on the writer, and BEGIN with the one it starts
        self.in_transaction = False

    @classmethod
    async def connect(cls, url: str, identity: dict[str, str], pool_size: int = POOL_SIZE) -> PostgresConnection:
        conn = cls(url, identity, pool_size)
        try:
            await conn._connect_writer()
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _connect_writer(self) -> psycopg.AsyncConnection[Any]:
        if self._writer is None or self._writer.closed:
            self._writer = await self._new_connection()
        return self._writer

    async def _new_connection(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        await _configure(conn)
        return conn

    @contextlib.contextmanager
    def _reachable(self) -> Iterator[None]:
        try:
            yield
        except psycopg.OperationalError as exc:
            reason = " ".join(str(exc).split()).replace(self.url, redacted(self.url))
            raise IndexUnavailable(f"the index at {redacted(self.url)} is out of reach: {reason}") from exc

    async def _guarded(self, run: Awaitable[Cursor]) -> Cursor:
        with self._reachable():
            return await run

    # ---- what aiosqlite offers ----

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> _Statement:
        return _Statement(self._guarded(self._execute(sql, parameters)))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Cursor:
        rows = list(rows)
        if not rows:
            return Cursor([], 0, None)
        with self._reachable():
            return await self._executemany(sql, rows)

    async def _executemany(self, sql: str, rows: list[Sequence[Any]]) -> Cursor:
        async with self._lock:
            writer = await self._begin_if_writing(sql)
            async with writer.cursor() as cur:
                await cur.executemany(to_postgres(sql), rows)
                return Cursor([], cur.rowcount, None)

    async def begin(self) -> None:
        """Begin a transaction now (``transaction``: its reads see a snapshot with its writes)."""
        async with self._lock:
            if not self.in_transaction:
                with self._reachable():
                    await self._begin_on_writer()

    async def commit(self) -> None:
        async with self._lock:
            if self.in_transaction:
                self.in_transaction = False
                assert self._writer is not None
                with self._reachable():
                    await self._writer.execute("COMMIT")

    async def rollback(self) -> None:
        async with self._lock:
            if not self.in_transaction:
                return
            self.in_transaction = False
            assert self._writer is not None
            if self._writer.closed:
                return  # the server went away: the transaction went with it
            try:
                await self._writer.execute("ROLLBACK")
            except psycopg.OperationalError:
                await self._writer.close()  # broken: the next statement connects again

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
        await self._readers.close()

    # ---- routing ----

    async def _execute(self, sql: str, parameters: Sequence[Any]) -> Cursor:
        if sql.lstrip().upper().startswith("PRAGMA"):
            return Cursor([], -1, None)  # SQLite's tuning: nothing to do here
        query, returning = self._translate(sql)
        if self.in_transaction or not self._is_read(sql):
            async with self._lock:
                writer = await self._begin_if_writing(sql)
                return await self._run(writer, query, parameters, returning)
        for attempt in (1, 2):
            reader: psycopg.AsyncConnection[Any] | None = None
            try:
                async with self._readers.connection() as reader:
                    return await self._run(reader, query, parameters, None)
            except psycopg.OperationalError:
                # A kept connection the server closed (it restarted) fails on its first use, and every idle one
                # is dropped: a query changes nothing, so once more on a new connection. A failed connect
                # (reader None: the server is down) is the answer.
                if attempt == 2 or reader is None or not reader.closed:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _is_read(sql: str) -> bool:
        return re.match(r"\s*(SELECT|WITH)\b", sql, re.IGNORECASE) is not None

    def _translate(self, sql: str) -> tuple[str, str | None]:
        """The PostgreSQL text, and the identity column an INSERT returns for ``lastrowid``."""
        query = to_postgres(sql)
        m = _INSERT_INTO.match(sql)
        column = self.identity.get(m.group(1)) if m else None
        if column is not None and "RETURNING" not in sql.upper():
            return f"{query} RETURNING {column}", column
        return query, None

    async def _begin_if_writing(self, sql: str) -> psycopg.AsyncConnection[Any]:
        """The writer; as sqlite3 does, a data change outside a transaction begins one (caller holds the lock)."""
        if self.in_transaction:
            assert self._writer is not None
            if self._writer.closed:
                raise psycopg.OperationalError("the connection to PostgreSQL was lost inside a transaction")
            return self._writer
        if _DML.match(sql):
            return await self._begin_on_writer()
        return await self._connect_writer()

    async def _begin_on_writer(self) -> psycopg.AsyncConnection[Any]:
        writer = await self._connect_writer()
        try:
            await writer.execute("BEGIN")
        except psycopg.OperationalError:
            if not writer.closed:
                raise
            writer = await self._connect_writer()  # it broke while idle (a server restart): nothing was lost
            await writer.execute("BEGIN")
        self.in_transaction = True
        return writer

    @staticmethod
    async def _run(conn: psycopg.AsyncConnection[Any], query: str, parameters: Sequence[Any],
                   returning: str | None) -> Cursor:
        async with conn.cursor() as cur:
            # Always a tuple, even empty: psycopg then reads the placeholders and turns '%%' back into '%'.
            await cur.execute(query, tuple(parameters))  # type: ignore[arg-type]
            rows = await cur.fetchall() if cur.description is not None else []
            lastrowid = int(rows[0][0]) if returning is not None and rows else None
            return Cursor([] if returning is not None else [tuple(r) for r in rows], cur.rowcount, lastrowid)
