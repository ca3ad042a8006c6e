"""Every table but ``segments``, into a PostgreSQL index, and the tokens of ``ROOT/keys/``.

Each step can run again on a target that holds part or all of it (a second run after a killed one) and leaves it
equal to the source: events are upserted by id a page at a time, their labels and snapshots replaced within the
page's id range; the small tables are replaced whole in one transaction each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiosqlite

from store.admin.index_keys import KEY_NAME
from store.admin.keys import KeyStore
from store.index.db import transaction
from store.index.dialect import identity_columns
from store.index.migrations import schema_text
from store.migrate import MigrateError
from store.migrate.source import columns

# What migrate does with each table of store/index/schema.sql (tests/store/test_migrate.py checks that none is left
# out). "segments" is store/migrate/segments.py's.
TABLES = {
    "schema_version": "not copied: the target has its own, and it must be the same version",
    "segments": "every row with its id; with --to-segments, each after its object's PUT was verified",
    "garbage": "with the segments left in place only (their files are still to delete); not to a bucket, where "
               "those files were never copied",
    "coverage_hours": "replaced whole, after the segments",
    "events": "every row with its id (the API's event id), upserted",
    "event_labels": "replaced for each page of events",
    "event_snapshots": "replaced for each page of events where they differ",
    "nodes": "replaced whole",
    "settings": "replaced whole",
    "settings_history": "replaced whole, with its ids",
    "signing_keys": "the key of ROOT/keys/ (a store on SQLite keeps it in files)",
    "issued_tokens": "ROOT/keys/issued.jsonl",
    "revoked_tokens": "ROOT/keys/revoked.json",
}
# Replaced whole: small (settings, nodes) or bounded (an hour's summary per camera: 72,000 rows for 100 cameras
# over 30 days), so one transaction each. Primary key first: the order rows are read in.
WHOLE = {"nodes": "node", "settings": "camera, key", "settings_history": "id", "garbage": "id",
         "coverage_hours": "camera, hour_us"}
EVENT_PAGE = 1000
SNAPSHOT_BATCH = 100  # JPEGs read from the source at once (tens of kB each)
INSERT_PAGE = 5000


def _insert(table: str, cols: list[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"


async def replace_table(source: aiosqlite.Connection, target: Any, table: str) -> int:
    """The target's ``table`` made the source's, in one transaction; returns its rows."""
    cols = await columns(source, table)
    copied = 0
    async with transaction(target) as conn:
        await conn.execute(f"DELETE FROM {table}")
        async with source.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {WHOLE[table]}") as cur:
            while page := [tuple(r) for r in await cur.fetchmany(INSERT_PAGE)]:
                await conn.executemany(_insert(table, cols), page)
                copied += len(page)
    return copied


async def copy_events(source: aiosqlite.Connection, target: Any) -> int:
    """Events by id, with their labels and snapshots, a page at a time; returns the events copied."""
    cols = await columns(source, "events")
    label_cols = await columns(source, "event_labels")
    upsert = (_insert("events", cols) + " ON CONFLICT (id) DO UPDATE SET " +
              ", ".join(f"{c} = excluded.{c}" for c in cols if c != "id"))
    after, copied = 0, 0
    while True:
        async with source.execute(f"SELECT {', '.join(cols)} FROM events WHERE id > ? ORDER BY id LIMIT ?",
                                  (after, EVENT_PAGE)) as cur:
            rows = [tuple(r) for r in await cur.fetchall()]
        last = int(rows[-1][cols.index("id")]) if rows else 2**62
        async with source.execute(f"SELECT {', '.join(label_cols)} FROM event_labels WHERE event_id > ? AND "
                                  "event_id <= ?", (after, last)) as cur:
            labels = [tuple(r) for r in await cur.fetchall()]
        async with transaction(target) as conn:
            ids = [int(r[cols.index("id")]) for r in rows]
            # An id the source no longer has (nothing deletes events today, but a target must end as the source).
            but = f" AND id NOT IN ({','.join('?' * len(ids))})" if ids else ""
            await conn.execute(f"DELETE FROM events WHERE id > ? AND id <= ?{but}", (after, last, *ids))
            await conn.executemany(upsert, rows)
            await conn.execute("DELETE FROM event_labels WHERE event_id > ? AND event_id <= ?", (after, last))
            await conn.executemany(_insert("event_labels", label_cols), labels)
            await _sync_snapshots(source, conn, after, last)
        copied += len(rows)
        if len(rows) < EVENT_PAGE:
            return copied
        after = last


async def _sync_snapshots(source: aiosqlite.Connection, conn: Any, after: int, last: int) -> None:
    """The snapshots of events ``after < id <= last`` made the source's; a JPEG is sent only where it differs (a
    second run sends none again)."""
    figures = "SELECT event_id, frame_us, width, height, LENGTH(jpeg) FROM event_snapshots WHERE event_id > ? AND " \
              "event_id <= ?"
    async with source.execute(figures, (after, last)) as cur:
        wanted = {int(r[0]): tuple(r[1:]) for r in await cur.fetchall()}
    async with conn.execute(figures, (after, last)) as cur:
        held = {int(r[0]): tuple(r[1:]) for r in await cur.fetchall()}
    stale = [event_id for event_id, shot in held.items() if wanted.get(event_id) != shot]
    if stale:
        await conn.execute(f"DELETE FROM event_snapshots WHERE event_id IN ({','.join('?' * len(stale))})", stale)
    missing = sorted(event_id for event_id, shot in wanted.items() if held.get(event_id) != shot)
    cols = await columns(source, "event_snapshots")
    for i in range(0, len(missing), SNAPSHOT_BATCH):
        batch = missing[i:i + SNAPSHOT_BATCH]
        async with source.execute(f"SELECT {', '.join(cols)} FROM event_snapshots WHERE event_id IN "
                                  f"({','.join('?' * len(batch))})", batch) as cur:
            shots = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in await cur.fetchall()]
        await conn.executemany(_insert("event_snapshots", cols), shots)


async def copy_keys(root: Path, target: Any) -> tuple[int, int] | None:
    """ROOT/keys/' signing key, issued and revoked tokens into the index (what the store would bring in at its
    first start on it, without marking ROOT/keys/: the source stays as it was). Returns (issued, revoked), or None
    when the store never made a key. ``MigrateError`` when the index has another key."""
    files = KeyStore(root)
    if not files.private_path.exists():
        return None
    from cryptography.hazmat.primitives import serialization

    from shared.auth import public_pem
    from shared.clock import now_us

    key = files.private_key(create=False)
    public = public_pem(key.public_key()).decode()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    issued, revoked = files.issued(), sorted(files.revoked())
    async with transaction(target) as conn:
        await conn.execute("INSERT INTO signing_keys (name, private_pem, public_pem, created_us, origin) VALUES "
                           "(?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING", (KEY_NAME, pem, public, now_us(),
                                                                            str(files.dir)))
        async with conn.execute("SELECT public_pem FROM signing_keys WHERE name = ?", (KEY_NAME,)) as cur:
            row = await cur.fetchone()
        if row is None or str(row[0]) != public:
            raise MigrateError(f"the target index already has another signing key than {files.private_path}: it is "
                               "not this store's migration; give migrate an empty database")
        await conn.executemany(
            "INSERT INTO issued_tokens (token_id, role, subject, expires, issued) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (token_id) DO NOTHING",
            [(str(t["token_id"]), str(t["role"]), str(t["subject"]), int(t["expires"]), int(t.get("issued", 0)))
             for t in issued])
        await conn.executemany("INSERT INTO revoked_tokens (token_id, revoked_us) VALUES (?, ?) "
                               "ON CONFLICT (token_id) DO NOTHING", [(t, now_us()) for t in revoked])
    return len({t["token_id"] for t in issued}), len(revoked)


def key_counts(root: Path) -> dict[str, int]:
    """What ROOT/keys/ holds, as the rows copy_keys makes of it."""
    files = KeyStore(root)
    if not files.private_path.exists():
        return {"signing_keys": 0, "issued_tokens": 0, "revoked_tokens": 0}
    return {"signing_keys": 1, "issued_tokens": len({t["token_id"] for t in files.issued()}),
            "revoked_tokens": len(files.revoked())}


async def reset_identities(target: Any) -> None:
    """Rows went in with their ids: each identity column's next value follows the highest, as SQLite's would."""
    for table, column in identity_columns(schema_text()).items():
        await target.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                             f"COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)")

