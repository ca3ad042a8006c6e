"""SegmentCache (store/segments/cache.py): local copies of S3 objects, bounded, least recently used first, never
evicted under a reader, never outside its directory."""

from __future__ import annotations

from pathlib import Path

from store.segments.cache import SegmentCache


def fetcher(data: bytes, calls: list[str], name: str):  # noqa: ANN201
    def fetch() -> bytes:
        calls.append(name)
        return data
    return fetch


def test_a_second_read_is_a_hit_and_the_least_recently_used_goes_first(tmp_path: Path) -> None:
    cache, calls = SegmentCache(tmp_path / "c", max_bytes=250), list[str]()
    for name in ("a/1.mp4", "b/2.mp4"):
        with cache.hold(name, fetcher(b"x" * 100, calls, name)) as path:
            assert path == tmp_path / "c" / name and path.read_bytes() == b"x" * 100
    with cache.hold("a/1.mp4", fetcher(b"", calls, "a/1.mp4")):
        pass  # a hit: a/1 is now the most recently used
    with cache.hold("c/3.mp4", fetcher(b"y" * 100, calls, "c/3.mp4")):
        pass
    assert calls == ["a/1.mp4", "b/2.mp4", "c/3.mp4"] and cache.hits == 1
    assert cache.bytes == 200 and not (tmp_path / "c" / "b/2.mp4").exists()  # b/2 was the least recently used
    assert (tmp_path / "c" / "a/1.mp4").exists() and (tmp_path / "c" / "c/3.mp4").exists()


def test_an_object_being_read_is_never_evicted_under_its_reader(tmp_path: Path) -> None:
    cache, calls = SegmentCache(tmp_path / "c", max_bytes=100), list[str]()
    with cache.hold("a.mp4", fetcher(b"x" * 100, calls, "a.mp4")) as held:
        with cache.hold("b.mp4", fetcher(b"y" * 100, calls, "b.mp4")) as other:
            assert held.read_bytes() == b"x" * 100 and other.read_bytes() == b"y" * 100  # over the bound a while
        assert held.exists() and not other.exists()  # b went as it was let go; a is still being read
    assert cache.bytes == 100 and held.exists()


def test_names_that_are_not_plain_paths_stay_inside_the_directory(tmp_path: Path) -> None:
    cache = SegmentCache(tmp_path / "c")
    for name in ("../../etc/passwd", "/abs.mp4", "a//b.mp4", "./x.mp4", ""):
        assert cache.path_of(name).parent == tmp_path / "c" / "_"
    cache.clear()
    assert not (tmp_path / "c").exists() and cache.bytes == 0
