"""Test media made by the ffmpeg command line, and H.264 packets compared NAL unit by NAL unit."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import av

from node.sources.nal import H264_PPS, H264_SPS, avcc_to_annexb, nal_type, nal_units


def ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def make_clip(path: Path, *, size: str = "320x240", rate: int = 10, seconds: float = 4, gop: int = 10,
              codec: str = "libx264", extra: tuple[str, ...] = ()) -> Path:
    """A test pattern clip encoded by the ffmpeg CLI (not by our code), no B-frames, fixed GOP."""
    args = [ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
            "-i", f"testsrc2=size={size}:rate={rate}", "-t", str(seconds), "-c:v", codec, "-g", str(gop),
            "-pix_fmt", "yuv420p"]
    if codec == "libx264":
        args += ["-bf", "0", "-x264-params", f"keyint={gop}:min-keyint={gop}:scenecut=0"]
    subprocess.run([*args, *extra, str(path)], check=True, timeout=60)
    return path


def avcc_nals(data: bytes, length_size: int = 4) -> list[bytes]:
    out, pos = [], 0
    while pos + length_size <= len(data):
        size = int.from_bytes(data[pos : pos + length_size], "big")
        out.append(data[pos + length_size : pos + length_size + size])
        pos += length_size + size
    return out


def packet_nals(data: bytes) -> list[bytes]:
    """NAL units of one packet, Annex-B or (as MP4 stores them) length-prefixed."""
    return nal_units(data) if data[:3] == b"\x00\x00\x01" or data[:4] == b"\x00\x00\x00\x01" else avcc_nals(data)


def au_hash(nals: list[bytes]) -> str:
    """Hash of an access unit's NAL units other than parameter sets (those may be re-attached)."""
    h = hashlib.sha256()
    for nal in nals:
        if nal_type("h264", nal) not in (H264_SPS, H264_PPS):
            h.update(len(nal).to_bytes(4, "big") + nal)
    return h.hexdigest()


def source_access_units(path: Path) -> tuple[list[tuple[bool, str]], set[bytes]]:
    """(keyframe, au_hash) of every packet as the demuxer hands it over, and its parameter sets."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        extradata = bytes(stream.codec_context.extradata or b"")
        params = set(nal_units(avcc_to_annexb(extradata) if extradata[:1] == b"\x01" else extradata))
        units = []
        for p in c.demux(stream):
            if p.size:
                nals = packet_nals(bytes(p))
                params |= {n for n in nals if nal_type("h264", n) in (H264_SPS, H264_PPS)}
                units.append((bool(p.is_keyframe), au_hash(nals)))
    return units, params


def recorded_access_units(files: list[Path]) -> list[tuple[bool, str, set[bytes]]]:
    """(keyframe, au_hash, parameter sets carried in-band) of every packet of recorded MP4 segments, in order."""
    out = []
    for f in files:
        with av.open(str(f)) as c:
            for p in c.demux(c.streams.video[0]):
                if p.size:
                    nals = packet_nals(bytes(p))
                    params = {n for n in nals if nal_type("h264", n) in (H264_SPS, H264_PPS)}
                    out.append((bool(p.is_keyframe), au_hash(nals), params))
    return out
