"""Choosing the encoder a machine really has: probe the hardware ones, fall back to software.

A codec being compiled into FFmpeg says nothing about the hardware behind it
(this PyAV build lists ``h264_nvenc`` on machines without an NVIDIA card), so
each candidate is *opened and made to encode one frame*; any failure at all
rules it out. Results are cached per process: six cameras probe once.

``libx264`` keeps the tuned ``node.capture.encode.H264Encoder``; every other encoder
goes through ``CodecEncoder``, which asks for no B-frames and a fixed GOP and
puts parameter sets on each keyframe (``ParameterSets``), as segments and
live viewers need.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol, cast

import av
from av.video.codeccontext import VideoCodecContext

from node.capture.encode import MICROSECONDS, EncodedUnit, H264Encoder
from node.sources.nal import ParameterSets
from shared.config import CameraConfig, default_bitrate

log = logging.getLogger(__name__)

HARDWARE = {
    "h264": ("h264_v4l2m2m", "h264_vaapi", "h264_qsv", "h264_nvenc"),
    "hevc": ("hevc_v4l2m2m", "hevc_vaapi", "hevc_qsv", "hevc_nvenc"),
}
SOFTWARE = {"h264": "libx264", "hevc": "libx265"}
PROBE_SIZE = (320, 240)


class EncoderError(RuntimeError):
    """No encoder works for a camera (or the one its config forces does not)."""


class VideoEncoder(Protocol):
    name: str

    def encode(self, frame: av.VideoFrame, capture_us: int) -> list[EncodedUnit]: ...

    def flush(self) -> list[EncodedUnit]: ...


def codec_family(codec: str) -> str:
    """``h264`` or ``hevc`` (FFmpeg's names, which the ingest protocol uses) for a config's codec."""
    return "hevc" if codec in ("h265", "hevc") else "h264"


def family_of_encoder(name: str) -> str:
    return "hevc" if "265" in name or "hevc" in name else "h264"


def _options(name: str, gop: int, kbps: int) -> dict[str, str]:
    if name == "libx265":
        # One thread, no lookahead, no B-frames; VPS/SPS/PPS on every keyframe.
        return {"preset": "ultrafast", "tune": "zerolatency",
                "x265-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:repeat-headers=1:vbv-maxrate={kbps}:"
                               f"vbv-bufsize={kbps}:pools=1:frame-threads=1:log-level=error"}
    if name.endswith("_nvenc"):
        return {"preset": "p1", "tune": "ll", "zerolatency": "1", "forced-idr": "1", "rc": "vbr"}
    if name.endswith("_qsv"):
        return {"preset": "veryfast", "look_ahead": "0", "async_depth": "1"}
    return {}


class CodecEncoder:
    """Any FFmpeg video encoder, set up for the node: fixed GOP, no B-frames, one AU out per frame in."""

    def __init__(self, name: str, width: int, height: int, fps: float, keyframe_interval_s: float = 1.0,
                 max_bitrate_bps: int | None = None) -> None:
        self.name = name
        gop = max(1, round(fps * keyframe_interval_s))
        bitrate = max_bitrate_bps or default_bitrate(width, height, fps)
        ctx = cast(VideoCodecContext, av.CodecContext.create(name, "w"))
        formats = [f.name for f in (ctx.codec.video_formats or [])]
        # Hardware encoders that take only their own frame type (vaapi) fail here, honestly, at open.
        self.pix_fmt = "yuv420p" if not formats or "yuv420p" in formats else formats[0]
        ctx.width, ctx.height, ctx.pix_fmt = width, height, self.pix_fmt
        ctx.time_base = MICROSECONDS
        ctx.framerate = Fraction(fps).limit_denominator(1001)
        ctx.gop_size = gop
        ctx.max_b_frames = 0
        ctx.bit_rate = bitrate
        ctx.options = _options(name, gop, max(1, bitrate // 1000))
        ctx.open()
        self._ctx = ctx
        self._params = ParameterSets(family_of_encoder(name), bytes(ctx.extradata) if ctx.extradata else None)

    def encode(self, frame: av.VideoFrame, capture_us: int) -> list[EncodedUnit]:
        if frame.format.name != self.pix_fmt:
            frame = frame.reformat(format=self.pix_fmt)
        frame.pts = capture_us
        frame.time_base = MICROSECONDS
        return self._units(self._ctx.encode(frame))

    def flush(self) -> list[EncodedUnit]:
        return self._units(self._ctx.encode(None))

    def _units(self, packets: list[av.Packet]) -> list[EncodedUnit]:
        return [EncodedUnit(int(p.pts or 0), bool(p.is_keyframe), self._params.fix(bytes(p), bool(p.is_keyframe)))
                for p in packets]


def build_encoder(name: str, width: int, height: int, fps: float, keyframe_interval_s: float = 1.0,
                  max_bitrate_bps: int | None = None) -> VideoEncoder:
    if name == "libx264":
        return H264Encoder(width, height, fps, keyframe_interval_s, max_bitrate_bps)
    return CodecEncoder(name, width, height, fps, keyframe_interval_s, max_bitrate_bps)


@dataclass(frozen=True)
class Probe:
    name: str
    ok: bool
    detail: str  # "" when it works, else why not
    ms: float

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "ms": round(self.ms, 1)}


def try_encoder(name: str) -> Probe:
    """Open ``name`` and encode one frame. Every failure, of any kind, is a 'no' with its reason."""
    t0 = time.perf_counter()
    try:
        width, height = PROBE_SIZE
        encoder = build_encoder(name, width, height, 15)
        frame = av.VideoFrame(width, height, "yuv420p")
        for plane in frame.planes:
            plane.update(b"\x80" * plane.buffer_size)
        units = encoder.encode(frame, 0) + encoder.flush()
        if not units or not units[0].data:
            raise EncoderError("opened, but produced no output for a frame")
        return Probe(name, True, "", (time.perf_counter() - t0) * 1000)
    except Exception as exc:  # noqa: BLE001 - a probe must survive anything a driver does
        return Probe(name, False, _reason(exc), (time.perf_counter() - t0) * 1000)


def _reason(exc: BaseException) -> str:
    """A short why-not: FFmpeg's own words, without the call PyAV wraps around them."""
    if isinstance(exc, av.codec.codec.UnknownCodecError):
        return "not in this FFmpeg build"
    if isinstance(exc, av.FFmpegError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"


Tester = Callable[[str], Probe]
_cache: dict[str, Probe] = {}
_cache_lock = threading.Lock()


def probe(name: str, tester: Tester | None = None) -> Probe:
    """The cached verdict on one encoder (a custom ``tester`` bypasses the cache: tests inject failures)."""
    if tester is not None:
        return tester(name)
    with _cache_lock:
        if name not in _cache:
            _cache[name] = try_encoder(name)
            result = _cache[name]
            log.info("encoder probe %s: %s (%.1f ms)", name, "works" if result.ok else result.detail, result.ms)
        return _cache[name]


def probe_all(codec: str = "h264", tester: Tester | None = None) -> list[Probe]:
    family = codec_family(codec)
    return [probe(name, tester) for name in (*HARDWARE[family], SOFTWARE[family])]


def choose_encoder(codec: str = "h264", forced: str | None = None, tester: Tester | None = None) -> str:
    """The first hardware encoder that works, else software; ``forced`` must work or this raises."""
    if forced:
        verdict = probe(forced, tester)
        if not verdict.ok:
            raise EncoderError(f"encoder {forced!r} is set in the config but does not work here: {verdict.detail}")
        return forced
    family = codec_family(codec)
    for name in HARDWARE[family]:
        if probe(name, tester).ok:
            return name
    software = SOFTWARE[family]
    verdict = probe(software, tester)
    if not verdict.ok:
        raise EncoderError(f"no {family} encoder works on this machine; {software}: {verdict.detail}")
    return software


def open_encoder(camera: CameraConfig, width: int | None = None, height: int | None = None,
                 fps: float | None = None, tester: Tester | None = None) -> VideoEncoder:
    """The encoder a camera should use, opened at its size (or the given one, e.g. a stream's own)."""
    name = choose_encoder(camera.codec, camera.encoder, tester)
    return build_encoder(name, width or camera.width, height or camera.height, fps or camera.fps,
                         camera.keyframe_interval_s, camera.max_bitrate_bps)
