"""``--segments URL`` for ``sht store`` and its admin commands: the flag, the backend it names, and a block
with the backend started. Only argparse at the top: sht/cli.py imports this when it builds its parser."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from store.segments import SegmentStore


def add_segments_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--segments", default=None, metavar="URL",
                   help="where segments are stored: file:DIR (default ROOT/segments) or "
                        "s3://BUCKET[/PREFIX]?endpoint=http://HOST:PORT[&region=R], an S3-compatible object store "
                        "(credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_SHARED_CREDENTIALS_FILE; "
                        "needs pip install 'sht-cctv[cluster]'); docs/storage.md")


def segments_from_args(args: argparse.Namespace) -> SegmentStore | None:
    """The segment storage ``--segments`` names (None: the default files under ROOT/segments); ValueError naming
    the flag when it does not parse. Nothing is contacted here: ``start()`` does that."""
    text = getattr(args, "segments", None)
    if not text:
        return None
    from store.segments.url import FileLocation, parse_segments_url

    location = parse_segments_url(text)
    if isinstance(location, FileLocation):
        from store.segments.files import FileSegments

        return FileSegments.at(location.directory)
    from store.segments.s3 import S3Segments

    return S3Segments(location, Path(args.root) / "cache" / "segments")


@contextlib.asynccontextmanager
async def opened(segments: SegmentStore | None) -> AsyncIterator[None]:
    """``segments`` started for the block (S3: SegmentStoreError, one line, when it cannot be reached)."""
    if segments is None:
        yield
        return
    await segments.start()
    try:
        yield
    finally:
        await segments.close()
