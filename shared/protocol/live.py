"""Live stream framing: one JSON ``init`` text message, then one binary message per access unit.

Binary frame = 12-byte big-endian header (uint64 capture time in microseconds
since the Unix epoch, uint32 flags; bit 0 = keyframe) + the access unit in
Annex-B. See docs/protocol.md.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from shared.protocol.errors import ProtocolError, parse_json_object

FRAME_HEADER = struct.Struct(">QI")
FLAG_KEYFRAME = 0x1
KNOWN_FLAGS = FLAG_KEYFRAME
MAX_CAPTURE_US = 2**63 - 1


@dataclass(frozen=True, slots=True)
class LiveInit:
    camera: str
    codec: str
    width: int
    height: int
    fps: float
    stream: str = "main"  # or "sub": the camera's smaller second encode (a new init comes on every switch)

    def serialize(self) -> str:
        return json.dumps(
            {"type": "init", "camera": self.camera, "codec": self.codec,
             "width": self.width, "height": self.height, "fps": self.fps, "stream": self.stream}
        )


@dataclass(frozen=True, slots=True)
class LiveStatus:
    """Something the viewer should know about the stream, e.g. that the camera stopped."""

    camera: str
    state: str
    reason: str

    def serialize(self) -> str:
        return json.dumps(
            {"type": "status", "camera": self.camera, "state": self.state, "reason": self.reason}
        )


@dataclass(frozen=True, slots=True)
class LiveFrame:
    capture_us: int
    keyframe: bool
    data: bytes


def encode_frame(capture_us: int, keyframe: bool, access_unit: bytes) -> bytes:
    """Build the one binary message that every subscriber of a camera shares."""
    if not 0 <= capture_us <= MAX_CAPTURE_US:
        raise ValueError(f"capture time {capture_us} out of range")
    return FRAME_HEADER.pack(capture_us, FLAG_KEYFRAME if keyframe else 0) + access_unit


def decode_frame(message: bytes) -> LiveFrame:
    if len(message) < FRAME_HEADER.size:
        raise ProtocolError(
            "short-frame", f"live frame has {len(message)} bytes, fewer than the 12-byte header"
        )
    capture_us, flags = FRAME_HEADER.unpack_from(message)
    if capture_us > MAX_CAPTURE_US:
        raise ProtocolError("bad-frame", f"capture time {capture_us} does not fit int64")
    if flags & ~KNOWN_FLAGS:
        raise ProtocolError("bad-frame", f"unknown flag bits {flags & ~KNOWN_FLAGS:#x} in live frame")
    return LiveFrame(capture_us, bool(flags & FLAG_KEYFRAME), bytes(message[FRAME_HEADER.size:]))


def parse_live_text(text: str | bytes) -> LiveInit | LiveStatus:
    obj = parse_json_object(text)
    kind = obj.get("type")
    try:
        if kind == "init":
            init = LiveInit(
                camera=obj["camera"], codec=obj["codec"], width=obj["width"],
                height=obj["height"], fps=obj["fps"], stream=obj.get("stream", "main"),
            )
            if not (isinstance(init.camera, str) and isinstance(init.codec, str) and init.stream in ("main", "sub")
                    and _is_int(init.width) and _is_int(init.height)
                    and isinstance(init.fps, (int, float)) and not isinstance(init.fps, bool)):
                raise ProtocolError("bad-init", f"init message has fields of the wrong type: {obj}")
            return init
        if kind == "status":
            status = LiveStatus(camera=obj["camera"], state=obj["state"], reason=obj["reason"])
            if not all(isinstance(v, str) for v in (status.camera, status.state, status.reason)):
                raise ProtocolError("bad-status", f"status message has non-string fields: {obj}")
            return status
    except KeyError as exc:
        raise ProtocolError("missing-field", f"{kind} message lacks field {exc.args[0]!r}") from None
    raise ProtocolError("unknown-type", f"unknown live message type {kind!r}")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class LiveReceiver:
    """Sans-I/O viewer side of a live stream: whole WebSocket messages in, typed events out.

    Enforces the stream's contract: ``init`` comes first, then frames; the
    first frame is a keyframe.
    """

    def __init__(self) -> None:
        self.init: LiveInit | None = None
        self.frames = 0

    def receive(self, message: str | bytes) -> LiveInit | LiveStatus | LiveFrame:
        if isinstance(message, str):
            event = parse_live_text(message)
            if isinstance(event, LiveInit):
                self.init = event
                self.frames = 0  # a new init (e.g. a switch to the sub stream) starts again on a keyframe
            return event
        if self.init is None:
            raise ProtocolError("no-init", "binary frame arrived before the init message")
        frame = decode_frame(message)
        if self.frames == 0 and not frame.keyframe:
            raise ProtocolError("no-keyframe", "first frame of a live stream is not a keyframe")
        self.frames += 1
        return frame
