"""The off-site copy's sans-I/O parts: object keys and the JSON it writes and reads back (store/replica/records.py),
the segments cursor (cursor.py), the state file (state.py) and the --replica / --from flags (cli.py)."""

from __future__ import annotations

import json
import sqlite3
from argparse import Namespace
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.playback.segment_shape import SHAPE_COLUMNS
from store.replica.cli import parse_replica_url, replica_from_args
from store.replica.cursor import SegmentCursor
from store.replica.records import (
    EVENT_COLUMNS,
    SEGMENT_COLUMNS,
    ReplicaFormatError,
    Snapshot,
    event_digest,
    event_document,
    event_key,
    labels_of,
    parse_event_document,
    row_from_metadata,
    row_metadata,
    segment_key,
    segment_name_of_key,
    snapshot_key,
)
from store.replica.state import CursorRow, ReplicaState
from store.segments import segment_name
from store.segments.url import S3Location

T = 1_764_165_166_000_000
camera_ids = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,31}", fullmatch=True)
times = st.integers(0, 4_000_000_000_000_000)


def schema_columns(table: str) -> list[str]:
    conn = sqlite3.connect(":memory:")
    conn.executescript(resources.files("store.index").joinpath("schema.sql").read_text())
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def test_every_column_of_an_event_and_a_segment_row_is_copied():
    assert set(schema_columns("events")) - set(EVENT_COLUMNS) == {"id"}
    # The shape (play_*) is not carried: a restore reads it from the segment's bytes (store/replica/restore.py).
    assert set(schema_columns("segments")) - set(SEGMENT_COLUMNS) == {"id", "path", *SHAPE_COLUMNS}


def test_keys_follow_the_layout():
    path = "segments/" + segment_name("cam0", T)
    assert segment_key(path) == path and segment_name_of_key(path) == segment_name("cam0", T)
    assert segment_key("/etc/passwd") is None and segment_key("segments/../x.mp4") is None
    assert segment_name_of_key("events/cam0/x.json") is None
    row = {"camera": "cam0", "start_us": T, "kind": "motion"}
    assert event_key(row) == f"events/cam0/2025-11-26/{T}-motion.json"
    assert snapshot_key(row, T + 5) == f"events/cam0/2025-11-26/{T}-motion-{T + 5}.jpg"
    with pytest.raises(ValueError, match="kind"):
        event_key(row | {"kind": "../x"})


segment_rows = st.fixed_dictionaries({
    "camera": camera_ids, "node": camera_ids, "start_us": times, "end_us": times, "frames": st.integers(0, 10**6),
    "size_bytes": st.integers(0, 2**40), "sha256": st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    "codec": st.just("h264"), "width_px": st.integers(0, 8192), "height_px": st.integers(0, 8192),
    "received_us": times})


@given(segment_rows)
def test_a_segment_row_goes_into_metadata_and_comes_back_the_same(row):
    metadata = row_metadata(row)
    assert all(v.isascii() for v in metadata.values()) and sum(len(v) for v in metadata.values()) < 2000
    name = segment_name(row["camera"], row["start_us"])
    assert row_from_metadata(metadata, name, row["size_bytes"]) == row | {"path": "segments/" + name}


def test_metadata_that_does_not_fit_its_object_is_refused():
    row = {"camera": "cam0", "node": "n", "start_us": T, "end_us": T + 1, "frames": 1, "size_bytes": 10,
           "sha256": "0" * 64, "codec": "h264", "width_px": 1, "height_px": 1, "received_us": T}
    name = segment_name("cam0", T)
    with pytest.raises(ReplicaFormatError, match="no sht-row"):
        row_from_metadata({}, name, 10)
    with pytest.raises(ReplicaFormatError, match="not this object"):
        row_from_metadata(row_metadata(row), name, 11)
    with pytest.raises(ReplicaFormatError, match="not this object"):
        row_from_metadata(row_metadata(row), segment_name("cam1", T), 10)
    with pytest.raises(ReplicaFormatError, match="frames"):
        row_from_metadata(row_metadata(row | {"frames": "1"}), name, 10)


floats01 = st.floats(0, 1, allow_nan=False)
event_rows = st.fixed_dictionaries({
    "camera": camera_ids, "node": camera_ids, "start_us": times, "end_us": times, "kind": st.sampled_from(
        ["motion", "loss"]), "score": floats01, "bbox_x": st.none() | floats01, "bbox_y": st.none() | floats01,
    "bbox_w": st.none() | floats01, "bbox_h": st.none() | floats01, "thumb_us": st.none() | times,
    "detail": st.text(max_size=50), "locked": st.integers(0, 1), "open": st.integers(0, 2),
    "label": st.none() | st.sampled_from(["person", "car"]), "label_score": st.none() | floats01,
    "label_x": st.none() | floats01, "label_y": st.none() | floats01, "label_w": st.none() | floats01,
    "label_h": st.none() | floats01,
    "labels": st.none() | st.dictionaries(st.sampled_from(["person", "car", "dog"]), st.integers(1, 9)).map(
        lambda d: json.dumps(d, sort_keys=True))})
snapshots = st.none() | st.builds(Snapshot, times, st.integers(1, 4000), st.integers(1, 4000), st.integers(1, 10**6))


@given(event_rows, snapshots)
def test_an_event_document_reads_back_as_the_row_it_was_written_from(row, snapshot):
    sha = "ab" * 32 if snapshot is not None else None
    read = parse_event_document(event_document(row, snapshot, sha), event_key(row))
    assert read.row == row
    if snapshot is None:
        assert read.snapshot is None
    else:
        assert read.snapshot == {"key": snapshot_key(row, snapshot.frame_us), "frame_us": snapshot.frame_us,
                                 "width": snapshot.width, "height": snapshot.height, "size": snapshot.size,
                                 "sha256": sha}
    labels = json.loads(row["labels"]) if row["labels"] is not None else {}
    assert labels_of(row) == sorted(labels.items())


@given(event_rows, snapshots)
def test_any_change_to_an_event_changes_its_fingerprint(row, snapshot):
    digest = event_digest(row, snapshot)
    assert event_digest(dict(row), snapshot) == digest
    assert event_digest(row | {"locked": 1 - row["locked"]}, snapshot) != digest
    assert event_digest(row | {"open": (row["open"] + 1) % 3}, snapshot) != digest
    assert event_digest(row | {"labels": json.dumps({"unicorn": 1})}, snapshot) != digest
    other = Snapshot(1, 1, 1, 1) if snapshot is None or snapshot.frame_us != 1 else None
    assert event_digest(row, other) != digest


def test_a_damaged_or_newer_event_document_is_refused():
    row = {c: None for c in EVENT_COLUMNS} | {"camera": "cam0", "node": "n", "start_us": T, "end_us": T,
                                              "kind": "motion", "score": 0.5, "detail": "", "locked": 0, "open": 0}
    key = event_key(row)
    good = json.loads(event_document(row, None, None))
    with pytest.raises(ReplicaFormatError, match="format 2"):
        parse_event_document(json.dumps(good | {"format": 2}).encode(), key)
    with pytest.raises(ReplicaFormatError, match="not an event object"):
        parse_event_document(b"{", key)
    with pytest.raises(ReplicaFormatError, match="holds the event"):
        parse_event_document(json.dumps(good).encode(), key.replace("motion", "loss"))
    with pytest.raises(ReplicaFormatError, match="start_us"):
        parse_event_document(json.dumps(good | {"event": good["event"] | {"start_us": "1"}}).encode(), key)


# --- the cursor -----------------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 25), st.booleans()), min_size=1, max_size=40), st.integers(1, 8),
       st.floats(0.5, 10))
def test_no_committed_id_is_ever_passed_over_and_none_is_copied_twice(ids, limit, tick):
    """Ids are taken one a second and seen (committed) up to 25 s later, or never (rolled back); the replica
    reads at most ``limit`` ids after its cursor (but those it holds above it) each ``tick``. With a settle time
    of 30 s, every id that is seen gets copied, exactly once, and the cursor passes them all in the end."""
    seen_at = {i: (i + delay if committed else None) for i, (delay, committed) in enumerate(ids, 1)}
    cursor, copies, now = SegmentCursor(), [], 0.0
    end = len(ids) + 25 + 30 + (len(ids) + 3) * tick  # the last commit, a settle, a read per id
    while now < end:
        visible = sorted(i for i, t in seen_at.items()
                         if t is not None and t <= now and i > cursor.upto and i not in cursor.above)
        read = visible[:limit]
        for row_id in cursor.wanted(read):
            copies.append(row_id)
            cursor.handled(row_id, 1)
        cursor.advance(read, now, 30.0, complete=len(read) < limit)
        assert all((t := seen_at[i]) is None or t > now or i in copies for i in range(1, cursor.upto + 1))
        now += tick
    committed = [i for i, t in seen_at.items() if t is not None]
    assert sorted(copies) == committed and len(copies) == len(set(copies))
    # Ids that never come are given up once a later one shows they are a gap; none after the last that came.
    assert cursor.upto == max(committed, default=0)


def test_a_gap_waits_for_its_id_then_is_given_up_after_the_settle_time():
    cursor = SegmentCursor()
    for i in (1, 3):
        cursor.handled(i, 10)
    cursor.advance([1, 3], now=0.0, settle_s=30.0)
    assert cursor.upto == 1 and cursor.above == {3: 10}  # 2 may still come
    cursor.advance([3], now=29.0, settle_s=30.0)
    assert cursor.upto == 1
    cursor.advance([3], now=30.0, settle_s=30.0)
    assert cursor.upto == 3 and cursor.above == {}


# --- the state file ----------------------------------------------------------------------------------------

def test_the_state_survives_a_reopen_and_starts_over_for_another_replica(tmp_path):
    state = ReplicaState.open(tmp_path, "s3://a?endpoint=http://h:1")
    state.save_cursor(SegmentCursor(7, {9: 100}), CursorRow("cam0", T))
    state.save_events({1: 11, 2: -22})
    state.set_marker_written()
    state.close()
    again = ReplicaState.open(tmp_path, "s3://a?endpoint=http://h:1")
    cursor, at = again.load_cursor()
    assert (cursor.upto, cursor.above, at) == (7, {9: 100}, CursorRow("cam0", T))
    assert again.load_events() == {1: 11, 2: -22} and again.marker_written()
    again.close()
    other = ReplicaState.open(tmp_path, "s3://b?endpoint=http://h:1")
    cursor, at = other.load_cursor()
    assert (cursor.upto, cursor.above, at) == (0, {}, CursorRow())
    assert other.load_events() == {} and not other.marker_written()
    other.close()


# --- the flags ----------------------------------------------------------------------------------------------

def test_the_replica_flag_takes_an_s3_url_only():
    assert replica_from_args(Namespace(replica=None)) is None
    assert replica_from_args(Namespace(replica="s3://copy/site-a?endpoint=http://far:8333")) == \
        S3Location("copy", "site-a/", "http://far:8333")
    with pytest.raises(ValueError, match="^--replica 'file:/x': the copy goes to an object store"):
        replica_from_args(Namespace(replica="file:/x"))
    with pytest.raises(ValueError, match="^--from 's3://B'.*not a bucket name"):
        parse_replica_url("s3://B", "--from")
