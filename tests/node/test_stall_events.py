"""A camera-stalled event (ingest v4) goes to a store that takes it, open then closed; an older store gets only
the closed one, as a loss saying the camera stalled (it would refuse the unknown kind)."""

from __future__ import annotations

import pytest

from node.recording.spool import Spool
from node.store_link.uploader import Uploader
from tests.node.test_open_events import _fake, run_until_drained

S = 1_000_000
T0 = 1_700_000_000_000_000
WHY = "camera cam0: Picamera2 camera 0 delivered no frame in 1.0 s"


@pytest.mark.parametrize(("version", "expected"), [
    ("4", ["cam0-camera-stalled-1700000000000000 open", "cam0-camera-stalled-1700000000000000"]),
    ("3", ["cam0-loss-1700000000000000"]),
    (None, ["cam0-loss-1700000000000000"]),
])
async def test_a_stall_goes_open_then_closed_and_to_an_older_store_as_a_loss(tmp_path, version, expected):
    async with _fake(version) as (url, store):
        spool = Spool(tmp_path)
        up = Uploader(url, spool, "node0", limit_bytes=10**9)
        await up.report_stall("cam0", T0, None, WHY)
        await up.report_stall("cam0", T0, T0 + 7 * S, WHY)
        await run_until_drained(up, store, len(expected))
    assert store.received == expected
