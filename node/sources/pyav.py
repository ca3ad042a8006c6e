"""Sources FFmpeg opens for us through PyAV: a file, a network stream, a V4L2 device.

``file:PATH`` (``file:PATH?loop=1`` plays it forever), ``url:rtsp://…`` /
``url:http://…`` (anything FFmpeg's demuxers read; RTSP goes over TCP), and
``v4l2:/dev/videoN`` (``?input_format=h264`` or ``mjpeg`` asks the device for
that format; the camera's configured size and rate are requested).

This module only opens and demuxes. What happens to the packets, passed
through (H.264) or decoded and re-encoded (anything else), is node/capture/stream.py's
job, on the camera's capture thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from urllib.parse import parse_qsl

import av
import av.bitstream
from av.container import InputContainer

from node.sources import register_source
from node.sources.base import PacketSource, SourceError
from shared.config import CameraConfig

KINDS = ("file", "url", "v4l2")
OPEN_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 3.0  # a live source silent this long counts as dropped
TRUE = ("1", "true", "yes", "on")
# FFmpeg's stream probing reads 20 frames (~2 s) before the first packet is handed over, then delivers them
# in one burst; 3 frames find the rate just as well on a camera stream, and the picture starts at once.
LIVE_PROBE = {"fpsprobesize": "3", "analyzeduration": "1000000"}


@dataclass(frozen=True)
class StreamSpec:
    kind: str  # file | url | v4l2
    target: str  # path, URL or device
    loop: bool = False
    options: dict[str, str] = field(default_factory=dict)  # FFmpeg demuxer options
    format: str | None = None  # FFmpeg input format, e.g. video4linux2

    @property
    def live(self) -> bool:
        """Live sources are timed by arrival and reconnected when they drop; files are paced by timestamps."""
        return self.kind != "file"


def parse_stream_source(source: str, camera: CameraConfig | None = None) -> StreamSpec:
    kind, _, rest = source.partition(":")
    if kind not in KINDS or not rest:
        raise SourceError(f"source {source!r} is not file:PATH, url:URL or v4l2:/dev/videoN")
    if kind == "url":
        # The URL keeps its own query string: it belongs to the camera, not to us.
        if "://" not in rest:
            raise SourceError(f"source {source!r}: url: needs a full URL, e.g. url:rtsp://camera/stream")
        options = {"rtsp_transport": "tcp"} if rest.startswith(("rtsp://", "rtsps://")) else {}
        return StreamSpec("url", rest, options=LIVE_PROBE | options)
    target, _, query = rest.partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True))
    if kind == "file":
        unknown = set(params) - {"loop"}
        if unknown:
            raise SourceError(f"source {source!r}: unknown option {sorted(unknown)[0]!r} (known: loop)")
        return StreamSpec("file", target, loop=params.get("loop", "0").lower() in TRUE)
    options = LIVE_PROBE | ({"input_format": params.pop("input_format")} if "input_format" in params else {})
    if params:
        raise SourceError(f"source {source!r}: unknown option {sorted(params)[0]!r} (known: input_format)")
    if camera is not None:
        options |= {"video_size": f"{camera.width}x{camera.height}", "framerate": str(camera.fps)}
    return StreamSpec("v4l2", target, options=options, format="video4linux2")


class PyAVSource(PacketSource):
    """One FFmpeg input; ``connect`` (re)opens it, ``packets`` demuxes its video stream.

    A ``PacketSource``: driven by ``node.capture.stream.StreamThread``, which paces it by its own
    timestamps or arrival rather than by a frame clock.
    """

    def __init__(self, spec: StreamSpec, fallback_fps: float = 15.0) -> None:
        self.spec = spec
        self.live, self.loop, self.target = spec.live, spec.loop, spec.target
        self.width = self.height = 0
        self.fps = fallback_fps
        self.codec = ""
        self.extradata: bytes | None = None
        self.time_base = Fraction(1, 90_000)
        self._container: InputContainer | None = None
        self._stream: av.VideoStream | None = None
        self._bsf: av.bitstream.BitStreamFilterContext | None = None
        if spec.kind == "file":
            if not Path(spec.target).is_file():
                raise SourceError(f"no such video file: {spec.target}")
            self.connect()  # fail now, at start, on a file that does not open

    @property
    def connected(self) -> bool:
        return self._container is not None

    def connect(self) -> None:
        """Open the input and find its video stream. Raises ``SourceError`` with FFmpeg's reason."""
        self.disconnect()
        try:
            container = av.open(self.spec.target, format=self.spec.format, options=self.spec.options,
                                timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S))
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(f"cannot open {self.spec.target}: {exc}") from exc
        if not isinstance(container, InputContainer) or not container.streams.video:
            container.close()
            raise SourceError(f"{self.spec.target} has no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        self._container, self._stream = container, stream
        self.codec = ctx.name
        self.width, self.height = ctx.width, ctx.height
        rate = stream.average_rate or stream.guessed_rate
        if rate and 0 < float(rate) <= 240:
            self.fps = float(rate)
        self.time_base = stream.time_base or Fraction(1, 90_000)
        self.extradata = bytes(ctx.extradata) if ctx.extradata else None
        # AVCC (MP4, MKV) to Annex-B; a stream that already is Annex-B passes through the filter untouched.
        self._bsf = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", stream) if self.codec == "h264" else None

    def packets(self) -> Iterator[av.Packet]:
        """Video packets as they come; H.264 ones in Annex-B. Ends at end of input (or of a loop pass)."""
        if self._container is None or self._stream is None:
            raise SourceError(f"{self.spec.target} is not connected")
        for packet in self._container.demux(self._stream):
            if packet.size == 0:
                continue  # the demuxer's end-of-stream marker
            if self._bsf is None:
                yield packet
            else:
                yield from self._bsf.filter(packet)

    def decode(self, packet: av.Packet) -> list[av.VideoFrame]:
        assert self._stream is not None
        return list(self._stream.codec_context.decode(packet))  # type: ignore[arg-type]

    def rewind(self) -> None:
        """Back to the start of a file (for ``loop``)."""
        if self._container is not None:
            self._container.seek(0)

    def disconnect(self) -> None:
        container, self._container, self._stream, self._bsf = self._container, None, None, None
        if container is not None:
            try:
                container.close()
            except (av.FFmpegError, OSError):
                pass  # a connection that already broke

    def close(self) -> None:
        self.disconnect()


def open_stream_source(camera: CameraConfig, arg: str) -> PyAVSource:
    return PyAVSource(parse_stream_source(camera.source, camera), camera.fps)


register_source("file", open_stream_source, "'file:PATH[?loop=1]'")
register_source("url", open_stream_source, "'url:rtsp://…'")
register_source("v4l2", open_stream_source, "'v4l2:/dev/videoN'")
