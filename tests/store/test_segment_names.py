"""``name_of``: an index row's path to a segment name, and None for any path the store does not write (absolute,
with ``..``, outside ``segments/``). Its fast path for clean paths must read every path as the path parser does."""

from __future__ import annotations

from pathlib import PurePosixPath

from hypothesis import given
from hypothesis import strategies as st

from store.segments import name_of, row_path, segment_name


def _name_of_by_path(path: str) -> str | None:
    """``name_of`` as it was first written (every path through PurePosixPath): the reference of its fast path."""
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or len(p.parts) < 2 or p.parts[0] != "segments":
        return None
    return PurePosixPath(*p.parts[1:]).as_posix()


@given(st.lists(st.sampled_from(["segments", "cam0", "2026-11-26", "08", "1.mp4", ".", "..", "", "a/", "/"]),
                max_size=6))
def test_name_of_is_the_path_reading_of_a_row(parts: list[str]) -> None:
    path = "/".join(parts)
    assert name_of(path) == _name_of_by_path(path)
    assert name_of("segments/" + path) == _name_of_by_path("segments/" + path)


def test_the_names_the_store_writes() -> None:
    name = segment_name("cam0", 1_764_165_160_000_000)
    assert name_of(row_path(name)) == name
    assert name_of("/segments/" + name) is None and name_of("segments/../index.sqlite3") is None
    assert name_of("other/" + name) is None and name_of("segments/") is None
