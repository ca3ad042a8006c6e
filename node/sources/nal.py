"""Annex-B NAL unit parsing: just enough to keep parameter sets on every keyframe.

The segmenter starts each segment on a keyframe and a live viewer joins on one,
so every keyframe access unit must carry its SPS/PPS (and VPS for H.265).
libx264 repeats them itself; an RTSP camera often sends them only once, in the
SDP (the stream's extradata); an MP4 keeps them in ``avcC``. ``ParameterSets``
remembers the latest ones and prepends them to a keyframe that lacks them,
leaving every other byte of the access unit untouched.
"""

from __future__ import annotations

H264_SPS, H264_PPS, H264_AUD = 7, 8, 9
HEVC_VPS, HEVC_SPS, HEVC_PPS, HEVC_AUD = 32, 33, 34, 35
START_CODE = b"\x00\x00\x00\x01"


def nal_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each NAL unit's bytes (header included, start code excluded) in Annex-B data."""
    spans: list[tuple[int, int]] = []
    start = -1
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        if start >= 0:
            end = i - 1 if i > 0 and data[i - 1] == 0 else i  # a 4-byte start code's leading zero
            spans.append((start, end))
        start = i + 3
        i = data.find(b"\x00\x00\x01", start)
    if start >= 0 and start < len(data):
        spans.append((start, len(data)))
    return spans


def nal_units(data: bytes) -> list[bytes]:
    return [data[s:e] for s, e in nal_spans(data)]


def nal_type(codec: str, nal: bytes) -> int:
    if not nal:
        return -1
    return (nal[0] >> 1) & 0x3F if codec == "hevc" else nal[0] & 0x1F


def avcc_to_annexb(extradata: bytes) -> bytes:
    """SPS and PPS of an ``avcC`` record (ISO 14496-15) as Annex-B; b"" if it is not one."""
    if len(extradata) < 7 or extradata[0] != 1:
        return b""
    out, pos = bytearray(), 5
    try:
        for count_mask in (0x1F, 0xFF):
            count = extradata[pos] & count_mask
            pos += 1
            for _ in range(count):
                size = int.from_bytes(extradata[pos : pos + 2], "big")
                out += START_CODE + extradata[pos + 2 : pos + 2 + size]
                pos += 2 + size
    except IndexError:
        return b""
    return bytes(out)


class ParameterSets:
    """Tracks a stream's parameter sets and puts them on keyframes that lack them."""

    def __init__(self, codec: str, extradata: bytes | None = None) -> None:
        self.codec = "hevc" if codec in ("hevc", "h265") else "h264"
        self.needed = (HEVC_VPS, HEVC_SPS, HEVC_PPS) if self.codec == "hevc" else (H264_SPS, H264_PPS)
        self.aud = HEVC_AUD if self.codec == "hevc" else H264_AUD
        self.sets: dict[int, bytes] = {}
        self.inserted = 0  # keyframes we had to complete (a fact for /health and tests)
        if extradata:
            self.learn(extradata if extradata[:1] == b"\x00" else avcc_to_annexb(extradata))

    def learn(self, annexb: bytes) -> set[int]:
        """Remember the parameter sets in ``annexb``; return the NAL types it holds."""
        types = set()
        for nal in nal_units(annexb):
            kind = nal_type(self.codec, nal)
            types.add(kind)
            if kind in self.needed:
                self.sets[kind] = nal
        return types

    def fix(self, data: bytes, keyframe: bool) -> bytes:
        """``data`` unchanged, unless it is a keyframe missing parameter sets we know."""
        if not keyframe:
            return data
        present = self.learn(data)
        missing = [k for k in self.needed if k not in present and k in self.sets]
        if not missing:
            return data
        self.inserted += 1
        prefix = b"".join(START_CODE + self.sets[k] for k in missing)
        spans = nal_spans(data)
        if spans and nal_type(self.codec, data[spans[0][0] : spans[0][1]]) == self.aud:
            cut = spans[0][1]  # keep the AUD first, as the spec wants
            return data[:cut] + prefix + data[cut:]
        return prefix + data
