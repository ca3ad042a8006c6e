"""``/recordings`` and ``/thumbs`` through a real StoreServer on loopback, over real segments made by the node's own
encoder and segmenter (tests/store/footage.py): the MP4 decodes frame for frame, its times map back to capture
times, Range answers byte for byte, gaps are left out and listed, and every bad input gets its one-line answer."""

from __future__ import annotations

import asyncio
import io
import json
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import av
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.capture.encode import H264Encoder
from node.recording.segmenter import Segmenter, build_segment
from node.sources.synthetic import SyntheticSource
from shared.auth import AccessControl, Verifier, issue_token
from shared.fanout import AccessUnit
from shared.protocol.ingest import SegmentHeader
from store.index import index_path
from store.index.db import Index
from store.ingest.writer import Ingestor, segment_relpath
from store.playback import clips
from store.playback.routes import iso
from store.serve.server import StoreServer
from tests.store.footage import CAMERA, SEGMENT_US, T0, make_footage

S = 1_000_000
# cam0: 6 segments from T0 (12 s), nothing for 8 s, 4 segments from T0+20 s (to T0+28 s), then 3 at 160x120
# from T0+40 s (another resolution). Every segment: 2 s at 10 fps, a keyframe each second.
FIRST, SECOND, SMALL = 6, 4, 3


LIVE = "cam1"  # one continuous recording: 3 segments as a node cuts them, each with its own bytes (and bit rates)


def record(root: Path, camera: str, start_us: int, frames: int) -> list[SegmentHeader]:
    """What a node records and a store ingests: ``frames`` at 10 fps from ``start_us``, cut every 2 s."""
    src, enc = SyntheticSource(320, 240, 10), H264Encoder(320, 240, 10, keyframe_interval_s=1.0)
    seg = Segmenter(camera, segment_seconds=2, fps=10)
    units = [AccessUnit.build(u.capture_us, u.keyframe, u.data)
             for i in range(frames) for u in enc.encode(src.read(i), start_us + i * 100_000)]
    finished = [f for u in units if (f := seg.push(u))] + [f for f in [seg.flush()] if f is not None]
    rows = []
    for f in finished:
        header, data = build_segment("node0", f, 320, 240, 10)
        rel = segment_relpath(camera, header.start_us)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        rows.append((header, rel.as_posix()))

    async def index() -> None:
        db = await Index.open(index_path(root))
        for header, rel in rows:
            await db.insert_segment(header, rel, header.start_us)
        await db.close()

    asyncio.run(index())
    return [h for h, _ in rows]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    make_footage(root, FIRST)
    make_footage(root, SECOND, start_us=T0 + 20 * S)
    make_footage(root, SMALL, width=160, height=120, start_us=T0 + 40 * S)
    headers = record(root, LIVE, T0, 60)
    assert [h.frames for h in headers] == [20, 20, 20]
    return root


class Store:
    def __init__(self, server: StoreServer, port: int, token: str | None) -> None:
        self.server, self.port, self.token = server, port, token

    async def get(self, target: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1"]
        if self.token:
            lines.append(f"Authorization: Bearer {self.token}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        status_line, *rest = head.strip().split("\r\n")
        fields = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in rest)}
        body = await reader.read()
        writer.close()
        return int(status_line.split()[1]), fields, body

    async def json(self, target: str) -> dict:
        status, _, body = await self.get(target)
        assert status == 200, body
        return json.loads(body)


async def open_store(root: Path, access: AccessControl | None = None, token: str | None = None
                     ) -> AsyncIterator[Store]:
    index = await Index.open(index_path(root))
    server = StoreServer(Ingestor(root, index), index, access=access)
    port = await server.start("127.0.0.1", 0)
    try:
        yield Store(server, port, token)
    finally:
        await server.close()
        await index.close()


@pytest.fixture
async def store(root: Path) -> AsyncIterator[Store]:
    async for s in open_store(root):
        yield s


def q(from_us: int, to_us: int) -> str:
    return f"from={iso(from_us)}&to={iso(to_us)}"


def top_boxes(data: bytes) -> list[bytes]:
    kinds, offset = [], 0
    while offset < len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        if size == 1:
            size = struct.unpack_from(">Q", data, offset + 8)[0]
        kinds.append(kind)
        offset += size
    assert offset == len(data)
    return kinds


def decode(data: bytes) -> list[av.VideoFrame]:
    with av.open(io.BytesIO(data)) as c:
        return list(c.decode(video=0))


def capture_of(doc: dict, media_s: float) -> str:
    """The capture time (ISO) of a media time, through the sidecar's pieces."""
    from datetime import datetime, timedelta

    piece = [p for p in doc["pieces"] if p["media_s"] <= media_s + 1e-9][-1]
    start = datetime.fromisoformat(piece["start"].replace("Z", "+00:00"))
    at = start + timedelta(seconds=media_s - piece["media_s"])
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def test_a_range_with_a_gap_decodes_frame_for_frame(store: Store) -> None:
    target = f"/recordings/{CAMERA}.mp4?{q(T0 + 1_500_000, T0 + 28 * S)}"
    doc = await store.json(target.replace(".mp4", ".json"))
    status, headers, data = await store.get(target)
    assert status == 200 and headers["content-type"] == "video/mp4" and headers["accept-ranges"] == "bytes"
    assert int(headers["content-length"]) == len(data) == doc["bytes"]
    assert top_boxes(data) == [b"ftyp", b"moov", b"mdat"]
    # From the keyframe at or before from (1 s GOPs: T0+1 s), every frame to the end of the second block.
    frames = decode(data)
    expected = (FIRST * 2 - 1) * 10 + SECOND * 20
    assert len(frames) == doc["frames"] == expected
    assert doc["start"] == iso(T0 + S) and doc["from"] == iso(T0 + 1_500_000) and doc["to"] == iso(T0 + 28 * S)
    assert doc["gaps"] == [{"start": iso(T0 + FIRST * SEGMENT_US), "end": iso(T0 + 20 * S)}]
    assert [(p["media_s"], p["start"], p["end"], p["frames"]) for p in doc["pieces"]] == [
        (0.0, iso(T0 + S), iso(T0 + 12 * S), 110), (11.0, iso(T0 + 20 * S), iso(T0 + 28 * S), 80)]
    assert doc["duration_s"] == pytest.approx(19.0) and doc["truncated"] is None
    # Each frame's media time maps back to its capture time (10 fps from each block's start).
    captures = [iso(T0 + S + i * 100_000) for i in range(110)] + [iso(T0 + 20 * S + i * 100_000) for i in range(80)]
    assert [capture_of(doc, float(f.pts * f.time_base)) for f in frames] == captures
    assert frames[0].key_frame


async def test_a_recording_as_a_node_cuts_it_is_one_piece(store: Store) -> None:
    target = f"/recordings/{LIVE}.mp4?{q(T0 + 500_000, T0 + 5_750_000)}"
    doc = await store.json(target.replace(".mp4", ".json"))
    _, _, data = await store.get(target)
    frames = decode(data)
    assert len(frames) == doc["frames"] == 58  # from the keyframe at T0 to the frame at T0+5.7 s
    assert doc["truncated"] is None and doc["gaps"] == [] and len(doc["pieces"]) == 1
    assert [capture_of(doc, float(f.pts * f.time_base)) for f in frames] == [
        iso(T0 + i * 100_000) for i in range(58)]
    # The pixels are the recording's: the MP4's last frame is the segment's frame, decoded the same.
    with av.open(str(next(store.server.ingestor.root.glob(f"segments/{LIVE}/**/{T0 + 4 * S}.mp4")))) as c:
        source = list(c.decode(video=0))
    assert (frames[-1].to_ndarray() == source[17].to_ndarray()).all()


async def test_range_requests_match_the_whole_file(store: Store) -> None:
    target = f"/recordings/{CAMERA}.mp4?{q(T0, T0 + 10 * S)}"
    _, _, whole = await store.get(target)
    total = len(whole)
    for header, (a, b) in [("bytes=0-99", (0, 99)), ("bytes=100-", (100, total - 1)),
                           ("bytes=-500", (total - 500, total - 1)), (f"bytes={total - 10}-{total + 100}",
                                                                      (total - 10, total - 1)),
                           ("bytes=1000-70000", (1000, 70000)), (f"bytes=-{total * 2}", (0, total - 1))]:
        status, headers, part = await store.get(target, {"Range": header})
        assert status == 206, header
        assert headers["content-range"] == f"bytes {a}-{b}/{total}", header
        assert int(headers["content-length"]) == len(part) == b - a + 1
        assert part == whole[a:b + 1], header
    for header in (f"bytes={total}-", f"bytes={total + 5}-{total + 9}", "bytes=-0"):
        status, headers, body = await store.get(target, {"Range": header})
        assert status == 416 and headers["content-range"] == f"bytes */{total}", header
        assert b"Traceback" not in body
    status, _, again = await store.get(target, {"Range": "bytes=5-2"})  # invalid: ignored, the whole file
    assert status == 200 and again == whole


async def test_a_resolution_change_ends_the_file_and_says_so(store: Store) -> None:
    doc = await store.json(f"/recordings/{CAMERA}.json?{q(T0 + 21 * S, T0 + 46 * S)}")
    assert doc["truncated"] and "change" in doc["truncated"]
    assert doc["pieces"][-1]["end"] == iso(T0 + 28 * S)
    _, _, data = await store.get(f"/recordings/{CAMERA}.mp4?{q(T0 + 21 * S, T0 + 46 * S)}")
    assert len(decode(data)) == doc["frames"] == 70
    small = await store.json(f"/recordings/{CAMERA}.json?{q(T0 + 40 * S, T0 + 46 * S)}")
    assert small["truncated"] is None and small["frames"] == 60


async def test_time_forms_and_the_same_layout_for_every_request(store: Store) -> None:
    a = await store.json(f"/recordings/{CAMERA}.json?from=@{T0 // S + 2}&to=@{T0 // S + 4}")
    b = await store.json(f"/recordings/{CAMERA}.json?from={iso(T0 + 2 * S).replace('Z', '%2B00:00')}"
                         f"&to={iso(T0 + 4 * S)}")
    assert a == b and a["frames"] == 20 and a["start"] == iso(T0 + 2 * S)


@pytest.mark.parametrize("target, status, says", [
    (f"/recordings/nope.mp4?{q(T0, T0 + S)}", 404, "no camera 'nope'"),
    (f"/recordings/Bad..Id.mp4?{q(T0, T0 + S)}", 404, "camera id 'Bad..Id' is not valid"),
    ("/recordings/..%2F..%2Findex.sqlite3", 400, "dot segments"),
    ("/recordings/%2E%2E/index.sqlite3.mp4", 400, "dot segments"),
    (f"/recordings/b%20d.mp4?{q(T0, T0 + S)}", 404, "camera id"),
    (f"/recordings/{CAMERA}.avi?{q(T0, T0 + S)}", 404, "/recordings/CAMERA.mp4"),
    (f"/recordings/{CAMERA}?{q(T0, T0 + S)}", 404, "/recordings/CAMERA.mp4"),
    (f"/recordings/{CAMERA}.mp4?{q(T0 + S, T0 + S)}", 400, "must be before"),
    (f"/recordings/{CAMERA}.mp4?{q(T0 + 2 * S, T0 + S)}", 400, "must be before"),
    (f"/recordings/{CAMERA}.mp4?{q(T0, T0 + 25 * 3600 * S)}", 400, "24 hours"),
    (f"/recordings/{CAMERA}.mp4?from=yesterdayish&to=now", 400, "from: 'yesterdayish' is not a time"),
    (f"/recordings/{CAMERA}.json?to=now", 400, "give from=TIME"),
    (f"/recordings/{CAMERA}.mp4?from=1&from=2&to=now", 400, "give from=TIME once"),
    (f"/recordings/{CAMERA}.mp4?{q(T0 + 13 * S, T0 + 19 * S)}", 404, "nothing recorded"),
    (f"/recordings/{CAMERA}.json?{q(T0 - 3600 * S, T0 - 60 * S)}", 404, "nothing recorded"),
    (f"/thumbs/{CAMERA}.jpg?at={iso(T0)}&width=5", 400, "width must be"),
    (f"/thumbs/{CAMERA}.jpg?at={iso(T0)}&width=wide", 400, "width must be"),
    (f"/thumbs/{CAMERA}.jpg", 400, "give at=TIME"),
    (f"/thumbs/nope.jpg?at={iso(T0)}", 404, "no camera 'nope'"),
    (f"/thumbs/{CAMERA}.png?at={iso(T0)}", 404, "/thumbs/CAMERA.jpg"),
])
async def test_bad_input_is_one_line(store: Store, target: str, status: int, says: str) -> None:
    got, _, body = await store.get(target)
    text = body.decode()
    assert got == status, text
    assert says in text and text.count("\n") == 1 and "Traceback" not in text


async def test_a_thumbnail(store: Store) -> None:
    status, headers, jpeg = await store.get(f"/thumbs/{CAMERA}.jpg?at={iso(T0 + 3 * S + 50_000)}&width=160")
    assert status == 200 and headers["content-type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
    assert int(headers["content-length"]) == len(jpeg)
    assert headers["x-frame-time"] in (iso(T0 + 3 * S), iso(T0 + 3 * S + 100_000))
    with av.open(io.BytesIO(jpeg)) as c:
        frame = next(c.decode(video=0))
    assert frame.width == 160


async def test_viewer_token_in_the_header_or_the_query(root: Path) -> None:
    key = Ed25519PrivateKey.generate()
    viewer, _ = issue_token(key, "viewer", "v1", 60)
    node, _ = issue_token(key, "node", "n1", 60)
    access = AccessControl(Verifier(key.public_key()))
    target = f"/recordings/{CAMERA}.json?{q(T0, T0 + 2 * S)}"
    async for s in open_store(root, access):
        assert (await s.get(target))[0] == 401
        assert (await s.get(target + f"&token={node}"))[0] == 403
        assert (await s.get(target + f"&token={viewer}"))[0] == 200
        s.token = viewer
        assert (await s.get(target))[0] == 200
        assert (await s.get(f"/thumbs/{CAMERA}.jpg?at={iso(T0)}"))[0] == 200


async def test_thumbnails_hold_the_apis_budget_while_they_decode(store: Store) -> None:
    store.server.api.media.budget.per_token = 1024  # less than one decode
    status, _, body = await store.get(f"/thumbs/{CAMERA}.jpg?at={iso(T0)}")
    assert status == 503 and "--temp-per-token" in body.decode() and body.decode().count("\n") == 1


async def test_a_client_has_at_most_so_many_recordings_open(store: Store) -> None:
    """Each open answer holds its clip's layout: over the cap a client is refused at once; every answer, however it
    ends, gives its slot back (store/playback/slots.py)."""
    slots = store.server.playback.slots
    target = f"/recordings/{CAMERA}.mp4?{q(T0, T0 + 10 * S)}"
    held = [slots.take("address 127.0.0.1") for _ in range(slots.per_client)]
    status, _, body = await store.get(target)
    assert status == 429 and "the most one may have (32)" in body.decode() and body.decode().count("\n") == 1
    held[0].give_back()
    assert (await store.get(target))[0] == 200
    for slot in held[1:]:
        slot.give_back()
    assert not slots.open
    # Whole, ranged, refused, nothing there, the sidecar: each gives its slot back.
    await store.get(target, {"Range": "bytes=100-"})
    await store.get(target, {"Range": "bytes=999999999-"})
    await store.get(f"/recordings/{CAMERA}.mp4?{q(T0 + 13 * S, T0 + 19 * S)}")
    await store.get(target.replace(".mp4", ".json"))
    assert not slots.open
    # A client that leaves before its answer starts, and one that leaves half way.
    for read in (0, 1000):
        reader, writer = await asyncio.open_connection("127.0.0.1", store.port)
        writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        if read:
            await reader.readexactly(read)
        writer.transport.abort()
        for _ in range(50):
            await asyncio.sleep(0.05)
            if not slots.open:
                break
        assert not slots.open, f"a client that left after {read} bytes still holds a slot"


async def test_a_clip_an_answer_still_holds_is_found_after_the_cache_dropped_it(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A player's Range requests must read the bytes its first answer's moov describes, even once other requests
    pushed that layout out of the cache (near the live edge a new layout would differ)."""
    monkeypatch.setattr(clips, "LAYOUTS", 2)
    playback = store.server.playback
    held = await playback.clip(CAMERA, T0, T0 + 10 * S)  # as an answer being sent holds it
    for k in range(1, 4):
        await playback.clip(CAMERA, T0 + k * S, T0 + 10 * S)
    assert len(playback.clips._clips) == 2 and (CAMERA, T0, T0 + 10 * S) not in playback.clips._clips
    assert await playback.clip(CAMERA, T0, T0 + 10 * S) is held
