"""Taking in an event from a node: one row, idempotent by (camera, start_us, kind)."""

from __future__ import annotations

import aiosqlite

from shared.protocol.ingest import Ack, EventRecord
from store.index.db import transaction


async def ingest_event(conn: aiosqlite.Connection, record: EventRecord) -> Ack:
    box = record.bbox or (None, None, None, None)
    async with transaction(conn):
        cur = await conn.execute(
            "INSERT INTO events (camera, node, start_us, end_us, kind, score, bbox_x, bbox_y, bbox_w, bbox_h, "
            "thumb_us, detail) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (camera, start_us, kind) DO NOTHING",
            (record.camera, record.node, record.start_us, record.end_us, record.kind, record.score, *box,
             record.thumb_us, record.detail),
        )
    return Ack(record.record_id, duplicate=cur.rowcount == 0)
