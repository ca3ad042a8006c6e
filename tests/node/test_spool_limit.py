"""The spool limit: oldest unsent segments dropped first, every drop counted and reported."""

import json

from node.recording.spool import Spool, SpooledEvent, SpooledSegment
from node.store_link.uploader import Uploader
from shared.protocol.ingest import SegmentHeader, sha256_hex


def segment(spool: Spool, start: int, size: int = 100) -> SpooledSegment:
    data = bytes(size)
    header = SegmentHeader(node="node0", camera="cam0", start_us=start, end_us=start + 10, frames=5,
                           bytes=size, sha256=sha256_hex(data))
    return spool.put(header, data)


async def test_oldest_unsent_segments_are_dropped_and_counted(tmp_path):
    spool = Spool(tmp_path)
    up = Uploader(None, spool, "node0", limit_bytes=350)
    for i in range(6):
        await up.add_and_enforce(segment(spool, 1000 * (i + 1)))
    kept = [i.header.start_us for i in up.pending if isinstance(i, SpooledSegment)]
    assert kept == [4000, 5000, 6000]  # the newest three fit in 350 bytes
    assert up.lost_segments == {"cam0": 3} and up.lost_frames == {"cam0": 15} and up.lost_bytes == 300
    losses = [i.record for i in up.pending if isinstance(i, SpooledEvent)]
    assert [(e.kind, e.start_us) for e in losses] == [("loss", 1000), ("loss", 2000), ("loss", 3000)]
    assert "spool full" in losses[0].detail
    # On disk exactly what is queued: three segments and three loss events that survive a restart.
    rescanned = Spool(tmp_path).scan()
    assert sorted(i.start_us for i in rescanned if isinstance(i, SpooledSegment)) == kept
    assert len([i for i in rescanned if isinstance(i, SpooledEvent)]) == 3
    health = up.backlog()
    assert health.lost_segments == 3 and health.bytes == 300 and health.limit_bytes == 350
    assert json.loads((tmp_path / ".events" / "cam0-loss-1000.json").read_text())["kind"] == "loss"


async def test_the_newest_segment_is_kept_even_if_it_alone_exceeds_the_limit(tmp_path):
    spool = Spool(tmp_path)
    up = Uploader(None, spool, "node0", limit_bytes=50)
    await up.add_and_enforce(segment(spool, 1000))
    assert len(up.pending) == 1 and not up.lost_segments
