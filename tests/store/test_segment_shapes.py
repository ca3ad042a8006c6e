"""Each segment's shape in its index row (store/index/shapes.py): written at ingest, by check --repair and
rebuild-index, carried by migrate, NULL on rows from before schema version 5 until playback's fill, and never a
reason to refuse footage. On real segments made by the node's code, on SQLite and on PostgreSQL."""

from __future__ import annotations

import dataclasses
import io
import logging
import sqlite3
from pathlib import Path

import av
import psycopg
import pytest

from shared.clock import now_us
from shared.protocol.ingest import Ack, SegmentHeader, sha256_hex
from store.index.db import Index
from store.index.dialect import to_postgres
from store.index.location import sqlite_path
from store.index.migrations import SCHEMA_VERSION, SEGMENT_COLUMNS_5
from store.index.shapes import SHAPE_SELECT, fill_shapes
from store.ingest.writer import Ingestor, mp4_problem, segment_relpath
from store.maintenance.check import check_store
from store.maintenance.rebuild import rebuild_index
from store.migrate.segments import SegmentCopier
from store.playback.segment_shape import SHAPE_COLUMNS, SegmentShape, shape_from_row, shape_of
from store.playback.segment_tables import read_table
from store.segments.files import FileSegments
from tests.store.index_backends import committed_rows
from tests.store.postgres import PostgresCluster
from tests.store.test_check import make_segments

Recorded = list[tuple[SegmentHeader, bytes]]
NO_SHAPE = (None,) * len(SHAPE_COLUMNS)


@pytest.fixture(scope="module")
def recorded() -> Recorded:
    """Three real 1 s segments of cam0, two hours old (young enough for any retention)."""
    return make_segments("cam0", (now_us() // 1_000_000 - 7200) * 1_000_000, seconds=3)


def shape_of_file(path: Path) -> SegmentShape:
    with open(path, "rb") as f:
        return shape_of(read_table(f, path.stat().st_size, path.name))


def row_shapes(url: str) -> dict[int, tuple[object, ...]]:
    """start_us -> the shape columns' values, as committed."""
    return {int(r[0]): tuple(r[1:]) for r in committed_rows(url, f"SELECT start_us, {SHAPE_SELECT} FROM segments")}


def fragmented(header: SegmentHeader, data: bytes) -> tuple[SegmentHeader, bytes]:
    """The same frames as a fragmented MP4 (an empty ``moov``, then ``moof``s): a valid video the store takes,
    whose sample table playback cannot read."""
    out = io.BytesIO()
    with av.open(io.BytesIO(data), mode="r") as src, av.open(out, "w", format="mp4",
                                                    options={"movflags": "frag_keyframe+empty_moov"}) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    frag = out.getvalue()
    return dataclasses.replace(header, bytes=len(frag), sha256=sha256_hex(frag)), frag


def test_the_migration_adds_exactly_the_shape_columns_in_their_order():
    assert tuple(name for name, _ in SEGMENT_COLUMNS_5) == SHAPE_COLUMNS
    assert SCHEMA_VERSION == 5


def _as_version_4(url: str, header: SegmentHeader) -> None:
    """What a version-4 store left: segments without the shape columns, one row in it."""
    statements = [f"ALTER TABLE segments DROP COLUMN {c}" for c in SHAPE_COLUMNS]
    statements.append("UPDATE schema_version SET version = 4")
    insert = ("INSERT INTO segments (camera, node, start_us, end_us, frames, size_bytes, sha256, codec, width_px, "
              "height_px, path, received_us) VALUES (?, ?, ?, ?, ?, ?, ?, 'h264', 160, 120, 'segments/x.mp4', ?)")
    values = (header.camera, header.node, header.start_us, header.end_us, header.frames, header.bytes,
              header.sha256, header.start_us)
    path = sqlite_path(url)
    if path is not None:
        with sqlite3.connect(path) as conn:
            for statement in statements:
                conn.execute(statement)
            conn.execute(insert, values)
        conn.close()
        return
    with psycopg.connect(url, autocommit=True) as pg:
        for statement in statements:
            pg.execute(statement)
        pg.execute(to_postgres(insert), values)


def _columns(url: str) -> list[str]:
    path = sqlite_path(url)
    if path is not None:
        with sqlite3.connect(path) as conn:
            names = [str(r[1]) for r in conn.execute("PRAGMA table_info(segments)")]
        conn.close()
        return names
    return [str(r[0]) for r in committed_rows(url, "SELECT column_name FROM information_schema.columns WHERE "
                                                   "table_name = 'segments' ORDER BY ordinal_position")]


async def test_a_version_4_index_gains_the_shape_columns_and_keeps_its_rows_with_no_shape(index_url, recorded,
                                                                                         new_index_url):
    await (await Index.open(index_url)).close()
    header = recorded[0][0]
    _as_version_4(index_url, header)
    assert not set(SHAPE_COLUMNS) & set(_columns(index_url))
    for _ in range(2):  # a second open changes nothing
        await (await Index.open(index_url)).close()
    fresh = new_index_url()
    await (await Index.open(fresh)).close()
    assert committed_rows(index_url, "SELECT version FROM schema_version") == [(5,)]
    assert _columns(index_url) == _columns(fresh)  # ADD COLUMN appends: the order of a new index
    assert _columns(index_url)[-len(SHAPE_COLUMNS):] == list(SHAPE_COLUMNS)
    assert committed_rows(index_url, "SELECT camera, start_us, sha256 FROM segments") == \
        [(header.camera, header.start_us, header.sha256)]
    assert row_shapes(index_url) == {header.start_us: NO_SHAPE}
    if sqlite_path(index_url) is None:  # byte counts and offsets: 64-bit, as on SQLite
        types = dict(committed_rows(index_url, "SELECT column_name, data_type FROM information_schema.columns "
                                               "WHERE table_name = 'segments' AND column_name LIKE 'play%'"))
        assert types == {c: "text" if c == "play_codec" else "bigint" for c in SHAPE_COLUMNS}


async def test_ingest_keeps_the_shape_of_the_stored_file(index_url, recorded, tmp_path):
    index = await Index.open(index_url)
    try:
        ingestor = Ingestor(tmp_path, index)
        for header, data in recorded:
            assert await ingestor.ingest(header, memoryview(data)) == Ack(header.segment_id)
    finally:
        await index.close()
    shapes = row_shapes(index_url)
    assert len(shapes) == len(recorded)
    for header, _ in recorded:
        stored = shape_of_file(tmp_path / segment_relpath(header.camera, header.start_us))
        assert shape_from_row(shapes[header.start_us]) == stored
        assert stored.samples == header.frames and stored.contiguous


async def test_a_segment_whose_table_cannot_be_read_is_stored_and_acked_with_no_shape(index_url, recorded,
                                                                                      tmp_path, caplog):
    header, data = fragmented(*recorded[0])
    assert mp4_problem(data, header) is None  # a video the store takes
    index = await Index.open(index_url)
    try:
        with caplog.at_level(logging.INFO, logger="store.index.shapes"):
            assert await Ingestor(tmp_path, index).ingest(header, memoryview(data)) == Ack(header.segment_id)
    finally:
        await index.close()
    assert (tmp_path / segment_relpath(header.camera, header.start_us)).read_bytes() == data
    assert row_shapes(index_url) == {header.start_us: NO_SHAPE}
    said = [r for r in caplog.records if r.name == "store.index.shapes"]
    assert len(said) == 1 and "no samples" in said[0].getMessage() and header.segment_id in said[0].getMessage()


async def test_check_repair_and_rebuild_index_write_the_shape_of_each_file(recorded, tmp_path):
    url = f"sqlite:{tmp_path / 'index.sqlite3'}"
    index = await Index.open(tmp_path / "index.sqlite3")
    try:
        ingestor = Ingestor(tmp_path, index)
        for header, data in recorded:
            await ingestor.ingest(header, memoryview(data))
        orphan = recorded[1][0]
        await index.conn.execute("DELETE FROM segments WHERE start_us = ?", (orphan.start_us,))
        await index.conn.commit()
        report = await check_store(tmp_path, index, repair=True)
        assert [p.kind for p in report.problems] == ["orphan"] and not report.unrepaired
    finally:
        await index.close()
    expected = {h.start_us: shape_of_file(tmp_path / segment_relpath(h.camera, h.start_us)).values()
                for h, _ in recorded}
    assert row_shapes(url) == expected
    await rebuild_index(tmp_path)
    assert row_shapes(url) == expected


async def test_fill_shapes_fills_only_rows_without_one(index_url, recorded, tmp_path):
    (first, first_data), (second, second_data) = recorded[:2]
    index = await Index.open(index_url)
    try:
        kept = shape_of(read_table(io.BytesIO(first_data), len(first_data)))
        filled = shape_of(read_table(io.BytesIO(second_data), len(second_data)))
        await index.insert_segment(first, "segments/a.mp4", 1, shape=kept)
        await index.insert_segment(second, "segments/b.mp4", 1)
        assert row_shapes(index_url) == {first.start_us: kept.values(), second.start_us: NO_SHAPE}
        other = dataclasses.replace(kept, samples=99, codec="0" * 32)
        items = [("cam0", first.start_us, other), ("cam0", second.start_us, filled),
                 ("cam0", 1, filled)]  # a row that is gone (retention): no error
        assert await fill_shapes(index.conn, items) == 1
        assert await fill_shapes(index.conn, []) == 0
        assert row_shapes(index_url) == {first.start_us: kept.values(), second.start_us: filled.values()}
        # The transaction is over: the connection takes the next writer's statements as its own.
        await index.insert_segment(recorded[2][0], "segments/c.mp4", 1)
    finally:
        await index.close()
    assert len(row_shapes(index_url)) == 3


async def test_migrate_carries_the_shapes_and_their_absence(recorded, tmp_path, postgres: PostgresCluster):
    source = await Index.open(tmp_path / "index.sqlite3")
    target_url = postgres.create_database()
    target = await Index.open(target_url)
    try:
        (first, first_data), (second, _) = recorded[:2]
        shape = shape_of(read_table(io.BytesIO(first_data), len(first_data)))
        await source.insert_segment(first, str(segment_relpath(first.camera, first.start_us)), 1, shape=shape)
        await source.insert_segment(second, str(segment_relpath(second.camera, second.start_us)), 1)
        copier = SegmentCopier(source.conn, FileSegments(tmp_path), "host:/root", target=target.conn,
                               say=lambda line: None)
        assert (await copier.run()).rows_written == 2
    finally:
        await source.close()
        await target.close()
    assert row_shapes(target_url) == row_shapes(f"sqlite:{tmp_path / 'index.sqlite3'}") == \
        {first.start_us: shape.values(), second.start_us: NO_SHAPE}
