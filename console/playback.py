"""Recorded footage in the console: one MP4 of a camera's range, decoded at the display rate in a worker thread.

A ``PlaybackSource`` says where the MP4 is (a local file, or the store's
``/recordings/CAMERA.mp4`` URL with the viewer token in an HTTP header) and how
its media time maps to capture time (``Pieces``: from the store's JSON sidecar,
or one piece for a clip exported through the query API, whose gaps stay gaps).

A ``Player`` owns the PyAV container and runs in one thread (``run``); the UI
sends it commands (pause, seek, step, speed, size) from any thread. A terminal
shows at most ``DISPLAY_FPS`` pictures a second, so the player wakes that often,
decodes forward to the frame due now and converts **only that one** to RGB,
scaled by swscale straight to the picture's size; frames it passes over are
decoded (the next ones need them) but never converted. Above 2x only keyframes
are sent to the decoder (``skip_frame = "NONKEY"`` as well). A seek is
``container.seek`` to the keyframe at or before the time, then decoding forward
to the frame at or before it.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import av.container
    import av.video.frame
    import av.video.stream
    from PIL.Image import Image

SPEEDS = (1, 2, 4, 8)
KEYFRAMES_ONLY_ABOVE = 2  # faster than this, decode keyframes only
DISPLAY_FPS = 10.0  # pictures a second at most: what a terminal shows
SEEK_S = 10.0
DEFAULT_SIZE = (160, 90)  # pixels, until the screen says how big the picture is
OPEN_TIMEOUT_S = 10.0


class PlaybackError(Exception):
    """The footage cannot be opened or read; the message says why, in one line."""


@dataclass(frozen=True)
class Piece:
    """A run of footage without a gap: media time ``media_s`` of the file shows capture time ``start_us``."""

    media_s: float
    start_us: int
    end_us: int


@dataclass(frozen=True)
class Pieces:
    items: tuple[Piece, ...]

    @classmethod
    def one(cls, start_us: int, end_us: int, media_s: float = 0.0) -> Pieces:
        """A clip whose gaps stay gaps in time (an export): capture time = start + media time."""
        return cls((Piece(media_s, start_us, end_us),))

    @classmethod
    def from_sidecar(cls, data: dict[str, Any]) -> Pieces:
        """``GET /recordings/CAMERA.json``'s ``pieces`` (ISO capture times, media seconds)."""
        items = tuple(Piece(float(p["media_s"]), iso_us(p["start"]), iso_us(p["end"])) for p in data["pieces"])
        if not items:
            items = (Piece(0.0, iso_us(data["start"]), iso_us(data["start"])),)
        return cls(tuple(sorted(items, key=lambda p: p.media_s)))

    def _at(self, media_s: float) -> Piece:
        found = self.items[0]
        for piece in self.items:
            if piece.media_s > media_s + 1e-6:
                break
            found = piece
        return found

    def capture_us(self, media_s: float) -> int:
        piece = self._at(media_s)
        return piece.start_us + round((media_s - piece.media_s) * 1e6)

    def media_s(self, capture_us: int) -> float:
        """The media time that shows ``capture_us`` (the next piece's start when it falls in a gap)."""
        for piece in self.items:
            if capture_us < piece.end_us or piece is self.items[-1]:
                return piece.media_s + max(0, capture_us - piece.start_us) / 1e6
        return 0.0  # pragma: no cover - the loop returns at the last piece


def iso_us(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return round(moment.timestamp() * 1_000_000)


@dataclass
class PlaybackSource:
    """Where one clip of ``camera`` is and what capture times it shows."""

    camera: str
    url: str  # a file path, or an http(s) URL
    pieces: Pieces
    from_us: int  # the range asked for (what ``x`` exports)
    to_us: int
    start_us: int | None = None  # the capture time to start at; None: the file's start
    options: dict[str, str] = field(default_factory=dict)  # FFmpeg open options (HTTP headers)
    cleanup: Callable[[], None] | None = None  # removes a local copy, when there is one
    via: str = "file"  # how it came: "recordings" (the store's HTTP playback) or "export"


@dataclass(frozen=True)
class Picture:
    """One picture to show, and where the player is."""

    image: Image
    media_s: float
    capture_us: int
    paused: bool
    speed: int
    ended: bool


@dataclass
class Counters:
    """What the player did, for tests and the benchmark: a frame converted is a frame shown."""

    decoded: int = 0
    converted: int = 0
    seeks: int = 0


class Player:
    """Plays one ``PlaybackSource``; ``run`` in a worker thread, the other methods from anywhere."""

    def __init__(self, source: PlaybackSource, show: Callable[[Picture], None], *,
                 size: tuple[int, int] = DEFAULT_SIZE, display_fps: float = DISPLAY_FPS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self._show_cb = show
        self._size = size
        self._tick_s = 1.0 / display_fps
        self._clock = clock
        self._commands: queue.Queue[tuple[Callable[..., None], tuple[Any, ...]]] = queue.Queue()
        self.counters = Counters()
        self.video_size: tuple[int, int] | None = None  # the footage's own size, once open
        self.paused = False
        self.speed = SPEEDS[0]
        self.ended = False
        self._container: av.container.InputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._frames: Iterator[av.video.frame.VideoFrame] = iter(())
        self._ahead: av.video.frame.VideoFrame | None = None  # decoded, not yet due
        self._eof = False
        self._continuous = True  # every frame since the last seek went through the decoder
        self._current: av.video.frame.VideoFrame | None = None  # the frame on screen
        self._image: Image | None = None  # it, converted at ``_last_size``
        self._last_size: tuple[int, int] | None = None
        self._first_s = 0.0
        self._base = (0.0, 0.0)  # (media time, clock) playing started from

    # -- commands, from any thread ------------------------------------------------------------------------------

    def _send(self, method: Callable[..., None], *args: Any) -> None:
        self._commands.put((method, args))

    def toggle_pause(self) -> None:
        self._send(self._toggle_pause)

    def seek(self, delta_s: float) -> None:
        self._send(self._seek_by, delta_s)

    def step(self, frames: int) -> None:
        self._send(self._step, frames)

    def change_speed(self, steps: int) -> None:
        self._send(self._change_speed, steps)

    def resize(self, width: int, height: int) -> None:
        self._send(self._resize, max(2, width), max(2, height))

    # -- the worker thread ----------------------------------------------------------------------------------------

    def run(self, cancelled: Callable[[], bool]) -> None:
        """Open the footage, show its first picture, and play until ``cancelled()``; raises PlaybackError."""
        import av

        try:
            container = av.open(self.source.url, options=self.source.options, timeout=OPEN_TIMEOUT_S)
        except (av.FFmpegError, OSError) as exc:
            raise PlaybackError(f"cannot open the footage of {self.source.camera}: {exc}") from exc
        try:
            if not container.streams.video:
                raise PlaybackError(f"the footage of {self.source.camera} has no video")
            self._container, self._stream = container, container.streams.video[0]
            self._open()
            self._loop(cancelled)
        except av.FFmpegError as exc:
            raise PlaybackError(f"cannot read the footage of {self.source.camera}: {exc}") from exc
        finally:
            container.close()

    def _open(self) -> None:
        stream = self._stream
        assert stream is not None and self._container is not None
        self.video_size = (stream.codec_context.width, stream.codec_context.height)
        self._restart_decoding()
        first = self._next_frame()
        if first is None:
            raise PlaybackError(f"the footage of {self.source.camera} holds no frame")
        self._first_s = first.time or 0.0
        start = self.source.start_us
        if start is None or self.source.pieces.media_s(start) <= self._first_s:
            self._ahead = first
            self._show(self._advance(self._first_s))
        else:
            self._seek_to(self.source.pieces.media_s(start))
        self._rebase()

    def _loop(self, cancelled: Callable[[], bool]) -> None:
        next_tick = self._clock() + self._tick_s
        while not cancelled():
            playing = not self.paused and not self.ended
            wait = max(0.0, next_tick - self._clock()) if playing else 0.25
            try:
                method, args = self._commands.get(timeout=wait)
            except queue.Empty:
                pass
            else:
                method(*args)
                continue  # every waiting command first, then the picture that is due
            if self.paused or self.ended:
                next_tick = self._clock() + self._tick_s
                continue
            frame = self._advance(self._media_now())
            if self._eof and self._ahead is None:
                self.ended = True
            if frame is not None or self.ended:
                self._show(frame or self._current)
            next_tick = max(next_tick + self._tick_s, self._clock())

    # -- decoding -------------------------------------------------------------------------------------------------

    @property
    def _keyframes_only(self) -> bool:
        return self.speed > KEYFRAMES_ONLY_ABOVE and not self.paused

    def _restart_decoding(self) -> None:
        assert self._stream is not None
        self._stream.codec_context.skip_frame = "NONKEY" if self._keyframes_only else "DEFAULT"
        self._frames = self._decode()
        self._ahead, self._eof = None, False
        self._continuous = not self._keyframes_only

    def _decode(self) -> Iterator[av.video.frame.VideoFrame]:
        assert self._container is not None and self._stream is not None
        for packet in self._container.demux(self._stream):
            if self._keyframes_only and packet.size and not packet.is_keyframe:
                self._continuous = False
                continue  # not even sent to the decoder
            for frame in packet.decode():
                self.counters.decoded += 1
                yield frame  # type: ignore[misc]  # a video stream's packets decode to video frames

    def _next_frame(self) -> av.video.frame.VideoFrame | None:
        if self._ahead is not None:
            ahead, self._ahead = self._ahead, None
            return ahead
        frame = next(self._frames, None)
        if frame is None:
            self._eof = True
        return frame

    def _advance(self, target_s: float) -> av.video.frame.VideoFrame | None:
        """Decode forward; the last frame at or before ``target_s`` (None: none new), the next kept ahead."""
        latest = None
        while not self._eof or self._ahead is not None:
            frame = self._next_frame()
            if frame is None:
                break
            if (frame.time or 0.0) <= target_s + 1e-6:  # float noise only
                latest = frame  # the one before it is dropped unconverted
            else:
                self._ahead = frame
                break
        return latest

    def _seek_to(self, media_s: float) -> None:
        """Show the frame at or before ``media_s`` (the first one when it is earlier than every frame)."""
        assert self._container is not None and self._stream is not None and self._stream.time_base is not None
        media_s = max(media_s, self._first_s)  # past the end: the seek lands on the last keyframe, then the last frame
        self._container.seek(int(media_s / self._stream.time_base), stream=self._stream, backward=True)
        self.counters.seeks += 1
        self._restart_decoding()
        frame = self._advance(media_s)
        if frame is None:
            frame = self._next_frame()
        if frame is not None:
            self.ended = False
            self._show(frame)

    # -- commands, run in the worker thread ------------------------------------------------------------------------

    def _media_now(self) -> float:
        media, at = self._base
        return media + (self._clock() - at) * self.speed

    def _rebase(self) -> None:
        self._base = (self._shown_s(), self._clock())

    def _shown_s(self) -> float:
        return (self._current.time or 0.0) if self._current is not None else self._first_s

    def _toggle_pause(self) -> None:
        if self.ended:
            self.paused = False
            self._seek_to(self._first_s)
        else:
            self.paused = not self.paused
            if self._keyframes_only:
                self._restart_from_here()
            self._show(self._current)
        self._rebase()

    def _restart_from_here(self) -> None:
        assert self._stream is not None
        self._stream.codec_context.skip_frame = "NONKEY" if self._keyframes_only else "DEFAULT"
        self._continuous = False  # what follows in the demuxer was (or will be) skipped

    def _seek_by(self, delta_s: float) -> None:
        self._seek_to(self._shown_s() + delta_s)
        self._rebase()

    def _step(self, frames: int) -> None:
        if not self.paused:
            return
        if frames < 0:
            self._seek_to(self._shown_s() - 1e-3)  # the frame before this one
            return
        if not self._continuous:
            self._seek_to(self._shown_s())  # decode every frame from the keyframe up to this one again
        frame = self._next_frame()
        if frame is not None:
            self._show(frame)
        elif self._eof:
            self.ended = True
            self._show(self._current)

    def _change_speed(self, steps: int) -> None:
        was_keyframes_only = self._keyframes_only
        index = min(len(SPEEDS) - 1, max(0, SPEEDS.index(self.speed) + steps))
        self.speed = SPEEDS[index]
        if was_keyframes_only and not self._keyframes_only:
            self._seek_to(self._shown_s())  # full decoding needs every frame from a keyframe on
        elif self._keyframes_only and not was_keyframes_only:
            self._restart_from_here()
        self._show(self._current)
        self._rebase()

    def _resize(self, width: int, height: int) -> None:
        if (width, height) != self._size:
            self._size = (width, height)
            self._show(self._current)

    def _show(self, frame: av.video.frame.VideoFrame | None) -> None:
        if frame is None:
            return
        if frame is not self._current or self._last_size != self._size:
            self.counters.converted += 1
            self._image = frame.to_image(width=self._size[0], height=self._size[1], interpolation="BILINEAR")
            self._current, self._last_size = frame, self._size
        assert self._image is not None
        media_s = frame.time or 0.0
        self._show_cb(Picture(self._image, media_s, self.source.pieces.capture_us(media_s), self.paused,
                              self.speed, self.ended))
