"""unlink_segments: the store's own names (string fast path), other safe names, and refusals."""

from pathlib import Path

from store.media.files import unlink_segments


def touch(root: Path, rel: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_store_names_go_with_their_empty_hour_and_day_directories(tmp_path: Path) -> None:
    a = touch(tmp_path, "segments/cam0/2025-11-01/00/1761955200000000.mp4")
    b = touch(tmp_path, "segments/cam0/2025-11-01/01/1761958800000000.mp4")
    keep = touch(tmp_path, "segments/cam0/2025-11-02/00/1762041600000000.mp4")
    gone = "segments/cam0/2025-11-01/02/1761962400000000.mp4"  # already missing: fine
    assert unlink_segments(tmp_path, [str(a.relative_to(tmp_path)), str(b.relative_to(tmp_path)), gone]) == 0
    assert not (tmp_path / "segments/cam0/2025-11-01").exists()
    assert keep.exists() and (tmp_path / "segments/cam0").is_dir()


def test_other_safe_names_are_deleted_and_unsafe_ones_refused(tmp_path: Path) -> None:
    odd = touch(tmp_path, "segments/cam0/2025-11-01/00/./odd.mp4")
    outside = touch(tmp_path, "elsewhere/1.mp4")
    errors = unlink_segments(tmp_path, ["segments/cam0/2025-11-01/00/./odd.mp4", "../elsewhere/1.mp4",
                                        "segments/../elsewhere/1.mp4", "/etc/passwd"])
    assert errors == 3
    assert not odd.exists() and not (tmp_path / "segments/cam0/2025-11-01").exists()
    assert outside.exists()
