"""Keeping a segment's object and its row together across stores that share a PostgreSQL index and a bucket.

Two writers touch a segment's object: ingest stores it and then writes its row; retention's collector (and
``sht store check --repair``, which also quarantines) removes an object only after checking that no row names it.
Within one store the Ingestor's per-segment locks keep the two apart. Across stores they do not: store B could
take a resend of a segment whose row retention removed (its PUT finds the same bytes and counts them as stored),
while store A's collector, having found no row, deletes the object; B then writes the row and acknowledges
footage whose object is gone.

The fence is a transaction-level PostgreSQL advisory lock per segment hour (``CAMERA/YYYY-MM-DD/HH``, the
directory or key prefix the collector works through):

- **removal** holds it exclusively around its row check and the removal (``removal_fence``), waiting for it;
- **ingest** holds it shared in the transaction that inserts the row (``confirm_for_ingest``, never waiting: a
  refused try is rolled back and tried again, so the store's one writer connection is never held by a wait), and
  before committing confirms that its object is still there. A removal that ran between ingest's PUT and that
  transaction has finished by then (its lock is gone), so the check sees its effect and ingest PUTs the bytes
  again; a removal that starts later sees the committed row and keeps the object.

A lock of an hour's key, not of each segment's: a collection of an hour holds one lock, not thousands (each
advisory lock takes a slot in the server's lock table). Keys that collide (``hashtext`` is 32 bits) only make a
wait, never a wrong answer.

On SQLite the index belongs to one store (ROOT/store.lock): the per-process locks are the whole fence, and this
does nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiosqlite

from store.index.db import dialect, transaction

# pg_advisory_xact_lock(int4, int4)'s first key: the schema and maintenance locks (store/index/migrations.py,
# store/maintenance/lease.py) use the one-bigint form, a key space of its own, so they never meet this one.
FENCE_CLASS = 0x5348_5403


class FenceBusy(Exception):
    """A store sharing the index is removing segments of this hour now: roll back, try again shortly."""


class SegmentGone(Exception):
    """The segment's object was removed after it was stored (a store's retention collected it): store it again."""


def hour_of(name: str) -> str:
    """The hour a segment name (``CAMERA/YYYY-MM-DD/HH/<start_us>.mp4``) lies in: ``CAMERA/YYYY-MM-DD/HH``."""
    return name.rpartition("/")[0]


@contextlib.asynccontextmanager
async def removal_fence(conn: aiosqlite.Connection, hour: str) -> AsyncIterator[None]:
    """Around a check that no row names some segments of ``hour`` and their removal: on PostgreSQL a transaction
    holding the hour's lock exclusively (waiting for ingest transactions in it to end), so no store commits a row
    there until the removal is done. ``conn`` is the remover's own connection (retention's, an admin command's):
    the wait holds it."""
    if dialect(conn) != "postgresql":
        yield  # SQLite: one store per index, whose per-segment locks the caller holds
        return
    async with transaction(conn):
        await hold_exclusively(conn, hour)
        yield


async def hold_exclusively(conn: aiosqlite.Connection, hour: str) -> None:
    """Inside the caller's transaction, on PostgreSQL: the hour's lock, alone, waiting for it. Until the
    transaction ends no store commits a row in that hour (nor removes a segment there)."""
    if dialect(conn) == "postgresql":
        await conn.execute("SELECT pg_advisory_xact_lock(?, hashtext(?))", (FENCE_CLASS, hour))


async def confirm_for_ingest(conn: aiosqlite.Connection, name: str,
                             still_stored: Callable[[], Awaitable[bool]]) -> None:
    """Inside the transaction that inserts ``name``'s row, before its commit: on PostgreSQL hold the hour's lock
    shared without waiting (``FenceBusy`` when a removal holds it), then ask ``still_stored`` whether the object is
    still there (``SegmentGone`` if not). Nothing to do on SQLite."""
    if dialect(conn) != "postgresql":
        return
    async with conn.execute("SELECT pg_try_advisory_xact_lock_shared(?, hashtext(?))",
                            (FENCE_CLASS, hour_of(name))) as cur:
        row = await cur.fetchone()
    if not (row and row[0]):
        raise FenceBusy(f"a store sharing the index is deleting segments of {hour_of(name)} (retention) right now")
    if not await still_stored():
        raise SegmentGone(f"{name} was deleted by a store's retention after it was stored")
