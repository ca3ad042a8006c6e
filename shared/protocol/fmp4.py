"""Fragmented MP4 for Media Source Extensions, written box by box (no I/O, no FFmpeg).

An init segment (``ftyp`` + ``moov`` with one H.264 track and ``mvex``) from a
keyframe's SPS and PPS, then one fragment (``moof`` + ``mdat``) per access
unit. Timestamps are 90 kHz ticks since a base capture time; every sample is
one nominal frame long. Written by hand because it is a few hundred bytes of
boxes and cheaper than PyAV's mp4 muxer (``movflags=frag_keyframe+empty_moov+
default_base_moof+frag_every_frame`` into a BytesIO): 10 vs 50 µs an access
unit at 320x180, 25 vs 31 µs at 1280x720 (``python3 -m bench.fmp4_cost``),
without an FFmpeg muxer per camera, and the relay then needs no PyAV.
"""

from __future__ import annotations

import struct

TIMESCALE = 90_000
KEY_SAMPLE_FLAGS = 0x02000000  # sample_depends_on = 2: a sync sample
DELTA_SAMPLE_FLAGS = 0x01010000  # depends on others, is_non_sync_sample
NAL_SPS, NAL_PPS, NAL_AUD = 7, 8, 9
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I", 8 + len(body)) + kind + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def nal_units(annexb: bytes | memoryview) -> list[bytes]:
    """The NAL units of an Annex-B access unit, without their start codes."""
    data = bytes(annexb)
    out: list[bytes] = []
    start = -1
    i = data.find(b"\x00\x00\x01")
    while i != -1:
        if start >= 0:
            end = i - 1 if i > 0 and data[i - 1] == 0 else i  # a 4-byte start code's leading zero
            out.append(data[start:end])
        start = i + 3
        i = data.find(b"\x00\x00\x01", start)
    if start >= 0 and start < len(data):
        out.append(data[start:])
    return [n for n in out if n]


def parameter_sets(nals: list[bytes]) -> tuple[bytes, bytes] | None:
    sps = next((n for n in nals if n[0] & 0x1F == NAL_SPS), None)
    pps = next((n for n in nals if n[0] & 0x1F == NAL_PPS), None)
    return (sps, pps) if sps and pps else None


def codec_string(sps: bytes) -> str:
    """``avc1.PPCCLL``: profile, constraint flags and level from the SPS, as MSE's isTypeSupported wants."""
    return f"avc1.{sps[1]:02x}{sps[2]:02x}{sps[3]:02x}"


def init_segment(width: int, height: int, sps: bytes, pps: bytes) -> bytes:
    ftyp = box(b"ftyp", b"iso5", struct.pack(">I", 512), b"iso5iso6avc1mp41")
    mvhd = full_box(b"mvhd", 0, 0, struct.pack(">IIII", 0, 0, 1000, 0), struct.pack(">IH", 0x10000, 0x100),
                    bytes(10), _MATRIX, bytes(24), struct.pack(">I", 2))
    tkhd = full_box(b"tkhd", 0, 3, struct.pack(">IIIII", 0, 0, 1, 0, 0), bytes(8), struct.pack(">hhhH", 0, 0, 0, 0),
                    _MATRIX, struct.pack(">II", width << 16, height << 16))
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIII", 0, 0, TIMESCALE, 0), struct.pack(">HH", 0x55C4, 0))
    hdlr = full_box(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"SHT live\x00")
    avcc = box(b"avcC", bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]), struct.pack(">H", len(sps)), sps,
               bytes([1]), struct.pack(">H", len(pps)), pps)
    avc1 = box(b"avc1", bytes(6), struct.pack(">H", 1), bytes(16), struct.pack(">HH", width, height),
               struct.pack(">II", 0x00480000, 0x00480000), bytes(4), struct.pack(">H", 1), bytes(32),
               struct.pack(">Hh", 0x18, -1), avcc)
    stbl = box(b"stbl", full_box(b"stsd", 0, 0, struct.pack(">I", 1), avc1),
               full_box(b"stts", 0, 0, bytes(4)), full_box(b"stsc", 0, 0, bytes(4)),
               full_box(b"stsz", 0, 0, bytes(8)), full_box(b"stco", 0, 0, bytes(4)))
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    minf = box(b"minf", full_box(b"vmhd", 0, 1, bytes(8)), dinf, stbl)
    trak = box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, minf))
    mvex = box(b"mvex", full_box(b"trex", 0, 0, struct.pack(">IIIII", 1, 1, 0, 0, 0)))
    return ftyp + box(b"moov", mvhd, trak, mvex)


def fragment(sequence: int, decode_time: int, duration: int, keyframe: bool, nals: list[bytes]) -> bytes:
    """One ``moof`` + ``mdat`` holding one sample: the NAL units, each with a 4-byte length."""
    payload = b"".join(struct.pack(">I", len(n)) + n for n in nals)
    flags = KEY_SAMPLE_FLAGS if keyframe else DELTA_SAMPLE_FLAGS
    # trun: data offset, then per sample duration, size, flags (0x000001 | 0x000100 | 0x000200 | 0x000400).
    moof_size = 8 + 16 + 8 + 16 + 20 + 32  # moof, mfhd, traf, tfhd, tfdt (v1), trun (one sample)
    moof = box(b"moof", full_box(b"mfhd", 0, 0, struct.pack(">I", sequence)),
               box(b"traf", full_box(b"tfhd", 0, 0x020000, struct.pack(">I", 1)),
                   full_box(b"tfdt", 1, 0, struct.pack(">Q", decode_time)),
                   full_box(b"trun", 0, 0x000701, struct.pack(">IiIII", 1, moof_size + 8, duration, len(payload),
                                                              flags))))
    assert len(moof) == moof_size
    return moof + struct.pack(">I", 8 + len(payload)) + b"mdat" + payload


def media_nals(nals: list[bytes]) -> list[bytes]:
    """What goes in a sample: parameter sets live in the init segment, delimiters nowhere."""
    return [n for n in nals if n[0] & 0x1F not in (NAL_SPS, NAL_PPS, NAL_AUD)]
