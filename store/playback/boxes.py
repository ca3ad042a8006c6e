"""ISO BMFF boxes, read and written by hand: just what playback needs of an MP4 (the node's segments) and of the
file it serves.

Reading: ``top_level`` walks a file's top-level boxes by their headers only (the ``mdat`` is never read);
``children`` lists the boxes inside a container's payload. Writing: ``box`` and ``full_box`` frame a payload;
``nest`` and ``full_nest`` do the same as lists of pieces (a day's ``moov`` is megabytes: joined once, at the end).
Sizes are 32-bit unless a box needs the 64-bit ``largesize``; a size of 0 ("to the end of the file") is taken
as the rest of what is given.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

MAX_BOX32 = 0xFFFF_FFFF


class BoxError(ValueError):
    """Bytes that are not the MP4 structure expected (the message says which box and why)."""


def top_level(f: BinaryIO, size: int) -> Iterator[tuple[bytes, int, int, int]]:
    """``(type, offset, header_size, total_size)`` of each top-level box of a file of ``size`` bytes."""
    offset = 0
    while offset + 8 <= size:
        f.seek(offset)
        head = f.read(16)
        if len(head) < 8:
            raise BoxError(f"the file ends inside the box header at {offset}")
        total, kind = struct.unpack(">I4s", head[:8])
        header = 8
        if total == 1:
            if len(head) < 16:
                raise BoxError(f"the file ends inside the 64-bit box header at {offset}")
            total = struct.unpack(">Q", head[8:16])[0]
            header = 16
        elif total == 0:
            total = size - offset
        if total < header or offset + total > size:
            raise BoxError(f"box {kind!r} at {offset} claims {total} bytes; the file has {size - offset} from there")
        yield kind, offset, header, total
        offset += total


def children(data: bytes | memoryview, start: int = 0, end: int | None = None) -> dict[bytes, list[memoryview]]:
    """The payloads of the boxes in ``data[start:end]``, by type, in order."""
    view = memoryview(data)
    end = len(view) if end is None else end
    found: dict[bytes, list[memoryview]] = {}
    offset = start
    while offset + 8 <= end:
        total, kind = struct.unpack_from(">I4s", view, offset)
        header = 8
        if total == 1:
            if offset + 16 > end:
                raise BoxError(f"box {kind!r} at {offset}: truncated 64-bit header")
            total = struct.unpack_from(">Q", view, offset + 8)[0]
            header = 16
        elif total == 0:
            total = end - offset
        if total < header or offset + total > end:
            raise BoxError(f"box {kind!r} at {offset} claims {total} bytes; its parent has {end - offset} left")
        found.setdefault(kind, []).append(view[offset + header:offset + total])
        offset += total
    return found


def one(found: dict[bytes, list[memoryview]], kind: bytes, where: str) -> memoryview:
    """The payload of the only box of a type; BoxError naming ``where`` if there is none."""
    boxes = found.get(kind)
    if not boxes:
        raise BoxError(f"{where} has no {kind.decode(errors='replace')} box")
    return boxes[0]


def framed(kind: bytes, payload: bytes | memoryview) -> bytes:
    """A payload read by ``children`` put back in its box, unchanged."""
    return box(kind, bytes(payload))


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    if len(body) + 8 > MAX_BOX32:
        return struct.pack(">I4sQ", 1, kind, len(body) + 16) + body
    return struct.pack(">I4s", len(body) + 8, kind) + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def nest(kind: bytes, parts: list[bytes]) -> list[bytes]:
    """A box as a list of pieces (its header, then ``parts``), so boxes nest without copying what they hold."""
    n = sum(len(p) for p in parts)
    if n + 8 > MAX_BOX32:
        return [struct.pack(">I4sQ", 1, kind, n + 16), *parts]
    return [struct.pack(">I4s", n + 8, kind), *parts]


def full_nest(kind: bytes, version: int, flags: int, parts: list[bytes]) -> list[bytes]:
    return nest(kind, [struct.pack(">I", (version << 24) | flags), *parts])


def mdat_header(data_bytes: int) -> bytes:
    """The header of an ``mdat`` holding ``data_bytes`` (64-bit when that does not fit 32 bits)."""
    if data_bytes + 8 > MAX_BOX32:
        return struct.pack(">I4sQ", 1, b"mdat", data_bytes + 16)
    return struct.pack(">I4s", data_bytes + 8, b"mdat")
