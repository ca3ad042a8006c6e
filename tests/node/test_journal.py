"""Crash recovery: a journal left by a killed node becomes a decodable segment."""

import io

import av

from node.recording.journal import JournalHeader, JournalWriter, read_journal
from node.recording.spool import Spool
from tests.node.test_segmenter import FPS, H, W, encoded_units


def write_journal(spool: Spool, units, cut_bytes: int = 0):
    path = spool.journal_path("cam0", units[0].capture_us)
    journal = JournalWriter(path, JournalHeader("node0", "cam0", W, H, FPS))
    for u in units:
        journal.add(u)
    journal.write(journal.take())
    journal.close()
    if cut_bytes:
        data = path.read_bytes()
        path.write_bytes(data[:-cut_bytes])
    return path


def decoded_frames(path) -> int:
    with av.open(io.BytesIO(path.read_bytes())) as c:
        return sum(1 for _ in c.decode(video=0))


def test_journal_round_trip(tmp_path):
    units = encoded_units(25)
    path = write_journal(Spool(tmp_path), units)
    recovered = read_journal(path)
    assert [u.message for u in recovered.units] == [u.message for u in units]
    assert recovered.dropped_bytes == 0 and recovered.header.camera == "cam0"


def test_torn_journal_is_recovered_up_to_its_last_complete_frame(tmp_path):
    spool = Spool(tmp_path)
    units = encoded_units(25)
    journal = write_journal(spool, units, cut_bytes=7)  # the last record is torn
    (item,) = spool.scan()
    assert not journal.exists()
    assert item.header.frames == 24 and item.header.start_us == units[0].capture_us
    assert decoded_frames(item.media_path) == 24


def test_journal_of_an_already_spooled_segment_is_dropped(tmp_path):
    spool = Spool(tmp_path)
    units = encoded_units(12)
    journal = write_journal(spool, units)
    (first,) = spool.scan()  # recovers it
    journal = write_journal(spool, units)  # as if the crash hit between spooling and removing it
    (again,) = spool.scan()
    assert not journal.exists() and again.header == first.header


def test_unusable_journals_are_discarded_not_uploaded(tmp_path):
    spool = Spool(tmp_path)
    units = encoded_units(15)
    write_journal(spool, units[3:])  # starts mid-GOP: cannot decode
    garbage = spool.journal_path("cam0", 5)
    garbage.write_bytes(b"not a journal at all")
    assert spool.scan() == []
    assert not list(tmp_path.rglob("*.journal"))
