"""What PyAV reads a stored segment from (``SegmentStore.open_media``): its local file, opened by FFmpeg itself as
always, or a reader of byte ranges of its S3 object (``store/segments/ranged.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TypeAlias

import av
import av.error
from av.container import InputContainer

from store.segments.ranged import RangedReader

MediaInput: TypeAlias = Path | RangedReader


@contextlib.contextmanager
def open_input(source: MediaInput) -> Iterator[InputContainer]:
    """``av.open`` of the source for the block. A reader is rewound first (a thumbnail opens its segment twice: the
    index, then the decode), and a failure it met (the object deleted or changed under it) is raised even where
    FFmpeg swallowed the failed read and went on: the caller gets that error, never what FFmpeg made of less."""
    if isinstance(source, Path):
        with av.open(str(source), "r") as container:
            yield container
        return
    source.seek(0)
    try:
        with av.open(source, "r") as container:
            yield container
    except Exception as exc:
        failed = source.failed
        if failed is None or failed is exc:
            raise
        raise failed from exc
    finally:
        if source.failed is not None:
            _drop_stashed()
    source.check()


def _drop_stashed() -> None:
    """PyAV keeps an exception a read callback raised (per thread) until its next error check, even when FFmpeg
    went on without failing; the reader's failure is raised here, so one left behind must not surface in a later,
    unrelated decode on this worker thread."""
    with contextlib.suppress(Exception):
        av.error.err_check(0)
