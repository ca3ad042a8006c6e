"""An event the store heard of only once it had ended (a node older than open events): its recording, read
from the stored segment at detect_fps, goes through the tracker and the store's real detector process."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import av

from node.capture.encode import H264Encoder
from node.recording.segmenter import FinishedSegment, build_segment
from shared.fanout import AccessUnit
from shared.protocol.ingest import EventRecord
from store.app import Store
from store.detect.service import DetectOptions
from store.index.event_labels import event_snapshot
from store.ingest.events import EventNotice, ingest_event

DATA = Path(__file__).resolve().parent.parent / "data"
T0 = 1_790_000_000_000_000
FRAME_US = 100_000


def segment_of(clip: Path, camera: str, frames: int = 10) -> tuple:
    """The first ``frames`` frames of a clip, encoded as a node would and muxed into a real segment."""
    with av.open(str(clip)) as container:
        pictures = [f for _, f in zip(range(frames), container.decode(video=0), strict=False)]
    width, height = pictures[0].width, pictures[0].height
    encoder = H264Encoder(width, height, 10)
    encoded = [u for i, f in enumerate(pictures) for u in encoder.encode(f, T0 + i * FRAME_US)] + encoder.flush()
    units = tuple(AccessUnit.build(u.capture_us, u.keyframe, u.data) for u in encoded)
    return build_segment("node0", FinishedSegment(camera, units, FRAME_US), width, height, 10)


async def labelled(store: Store, event_id: int, timeout_s: float = 30.0) -> tuple | None:
    """The event's label, score and labels once its analysis has finished."""
    assert store.index is not None and store.detection is not None
    deadline = time.monotonic() + timeout_s
    while event_id not in store.detection._finished:
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.1)
    async with store.index.conn.execute("SELECT label, label_score, labels FROM events WHERE id = ?",
                                        (event_id,)) as cur:
        return await cur.fetchone()


async def test_an_event_seen_only_once_ended_is_labelled_from_its_recording(tmp_path: Path) -> None:
    store = Store(tmp_path / "store", detect=DetectOptions("local"))
    await store.start("127.0.0.1", 0)
    try:
        assert store.server is not None and store.index is not None and store.detection is not None
        events = {}
        for camera, clip in (("people", DATA / "vtest.mp4"), ("tree", DATA / "tree.mp4")):
            header, data = segment_of(clip, camera)
            ack = await store.server.ingestor.ingest(header, memoryview(data))
            assert not hasattr(ack, "code"), ack
            record = EventRecord("node0", camera, T0, T0 + 900_000, "motion", 0.8, thumb_us=T0 + 500_000)
            done = await ingest_event(store.index.conn, record)
            store.detection.event_changed(EventNotice(done.event_id, record, new=True))
            events[camera] = done.event_id
        person = await labelled(store, events["people"])
        tree = await labelled(store, events["tree"])
        assert person is not None and tree is not None, store.detection.health()
        assert person[0] == "person" and person[1] >= 0.7 and json.loads(person[2])["person"] >= 1
        assert tree == (None, None, "{}")
        snap = await event_snapshot(store.index.conn, events["people"])
        assert snap is not None and T0 <= snap[0] < T0 + 900_000 and snap[3][:2] == b"\xff\xd8"
        assert await event_snapshot(store.index.conn, events["tree"]) is None
    finally:
        await store.stop()
