from node.recording.spool import Spool
from shared.protocol.ingest import SegmentHeader, sha256_hex


def header(camera: str, start: int, data: bytes) -> SegmentHeader:
    return SegmentHeader(node="node0", camera=camera, start_us=start, end_us=start + 10, frames=1,
                         bytes=len(data), sha256=sha256_hex(data))


def test_put_scan_remove(tmp_path):
    spool = Spool(tmp_path)
    a = spool.put(header("cam1", 200, b"bb"), b"bb")
    spool.put(header("cam0", 100, b"a"), b"a")
    found = Spool(tmp_path).scan()
    assert [(s.header.camera, s.header.start_us) for s in found] == [("cam0", 100), ("cam1", 200)]
    assert spool.usage() == (2, 3)
    spool.remove(a)
    assert [s.header.camera for s in spool.scan()] == ["cam0"]


def test_scan_cleans_leftovers_but_keeps_complete_segments(tmp_path):
    spool = Spool(tmp_path)
    spool.put(header("cam0", 100, b"a"), b"a")
    (tmp_path / "cam0" / "300.mp4").write_bytes(b"unfinished")  # no header: a write cut short
    (tmp_path / "cam0" / "400.mp4.tmp-abcd").write_bytes(b"half")
    (tmp_path / "cam0" / "500.json").write_text("{}")  # unreadable header: kept for a human
    (tmp_path / ".refused").mkdir()
    (tmp_path / ".refused" / "cam0-1.json").write_text("{}")
    found = spool.scan()
    assert [s.header.start_us for s in found] == [100]
    assert not (tmp_path / "cam0" / "300.mp4").exists()
    assert not (tmp_path / "cam0" / "400.mp4.tmp-abcd").exists()
    assert (tmp_path / "cam0" / "500.json").exists()


def test_a_second_version_of_a_segment_never_overwrites_the_first(tmp_path):
    spool = Spool(tmp_path)
    whole = spool.put(header("cam0", 100, b"whole"), b"whole")
    trimmed = spool.put(header("cam0", 100, b"cut"), b"cut", tag=".trim")
    assert whole.media_path != trimmed.media_path and whole.media_path.read_bytes() == b"whole"
    spool.remove(whole)
    assert [s.media_path.read_bytes() for s in spool.scan()] == [b"cut"]
