"""One camera's live picture: its node's ``/live/{camera}`` stream, keyframes only, 1–2 pictures a second.

Two workers per tile: an asyncio worker reads the WebSocket and keeps only the
keyframes the throttle admits, handing the newest to a thread worker that
decodes it with PyAV (``console.live_stream``), so neither the network nor the
decoder ever holds up the UI. The tile reconnects by itself with backoff and
says, in its status line, when its camera is down or its node unreachable.
"""

from __future__ import annotations

import asyncio
import queue
from typing import TYPE_CHECKING, Literal

import websockets
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Center, Vertical
from textual.message import Message
from textual.widgets import Label
from textual.worker import get_current_worker
from websockets.asyncio.client import connect

from console.formatting import clock
from console.live_stream import DecodeError, KeyframeDecoder, KeyframeThrottle
from console.widgets.picture import fit_cells, make_picture
from shared.backoff import Backoff
from shared.protocol.errors import ProtocolError
from shared.protocol.live import LiveFrame, LiveInit, LiveReceiver, LiveStatus
from shared.security import client_ssl
from shared.urls import ws_url

if TYPE_CHECKING:
    from PIL.Image import Image

TileState = Literal["waiting", "connecting", "live", "down", "unreachable"]
STATE_STYLE = {"waiting": "dim", "connecting": "yellow", "live": "green", "down": "bold red",
               "unreachable": "bold red"}
OPEN_TIMEOUT_S = 3.0
DOWN_RECHECK_S = 1.0


class CameraTile(Vertical):
    class FrameReady(Message):
        def __init__(self, image: Image, capture_us: int) -> None:
            super().__init__()
            self.image, self.capture_us = image, capture_us

    class StreamNote(Message):
        def __init__(self, state: TileState, text: str) -> None:
            super().__init__()
            self.state, self.text = state, text

    def __init__(self, camera: str, *, headers: dict[str, str] | None = None, ca: str | None = None,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.camera = camera
        self.headers = headers or {}  # e.g. a viewer token for nodes that want one
        self.ca = ca  # CA file to verify nodes served over TLS
        self.node_url: str | None = None
        self.down_reason: str | None = None  # set while the fleet says the camera is down
        self.state: TileState = "waiting"
        self.status_text = "waiting for the fleet…"
        self.last_capture_us: int | None = None
        self._image_size: tuple[int, int] | None = None
        self._keyframes: queue.Queue[LiveFrame] = queue.Queue(maxsize=1)

    def compose(self) -> ComposeResult:
        yield Label(Text(self.camera, style="bold"), classes="tile-title")
        with Center(classes="tile-frame"):
            yield make_picture(classes="tile-picture")
        yield Label("", classes="tile-status")

    def configure(self, node_url: str | None, down_reason: str | None) -> None:
        """Attributes from the screen: where the camera's node is, and whether the fleet says it is down."""
        self.node_url, self.down_reason = node_url, down_reason
        if down_reason is not None and self.state != "live":
            self._set_state("down", f"down: {down_reason}")

    def start(self) -> None:
        self._stream()
        self._decode()

    def stop(self) -> None:
        self.workers.cancel_node(self)
        self._set_state("waiting", "paused")

    def show_frame(self, image: Image, capture_us: int) -> None:
        self._image_size = image.size
        self._fit_picture()
        self.query_one(".tile-picture").image = image  # type: ignore[attr-defined]  # textual-image's Image
        self.last_capture_us = capture_us
        self._set_state("live", f"live · {clock(capture_us)}")

    def on_resize(self) -> None:
        self._fit_picture()

    def _fit_picture(self) -> None:
        """Size the picture to the largest box that fits the tile and keeps the camera's shape."""
        if self._image_size is None:
            return
        rows_for_text = 2  # title and status lines
        columns, rows = fit_cells(*self._image_size, self.content_size.width,
                                  self.content_size.height - rows_for_text)
        picture = self.query_one(".tile-picture")
        picture.styles.width, picture.styles.height = columns, rows

    def _set_state(self, state: TileState, text: str) -> None:
        self.state, self.status_text = state, text
        if self.is_mounted:
            self._show_state()

    def on_mount(self) -> None:
        self._show_state()

    def _show_state(self) -> None:
        for name in STATE_STYLE:
            self.set_class(name == self.state, f"-{name}")
        self.query_one(".tile-status", Label).update(
            Text(self.status_text, style=STATE_STYLE[self.state], overflow="ellipsis"))

    def on_camera_tile_frame_ready(self, message: FrameReady) -> None:
        message.stop()
        self.show_frame(message.image, message.capture_us)

    def on_camera_tile_stream_note(self, message: StreamNote) -> None:
        message.stop()
        self._set_state(message.state, message.text)

    def _offer(self, frame: LiveFrame) -> None:
        """Hand the decoder the newest keyframe, replacing one it has not started on."""
        try:
            self._keyframes.get_nowait()
        except queue.Empty:
            pass
        self._keyframes.put_nowait(frame)

    @work(exclusive=True, group="stream", exit_on_error=False)
    async def _stream(self) -> None:
        backoff = Backoff(initial=0.5, maximum=10.0)
        while True:
            url = self.node_url
            if url is None or self.down_reason is not None:
                why = self.down_reason or "its node has not told the store where it is"
                self.post_message(self.StreamNote("down", f"down: {why}"))
                await asyncio.sleep(DOWN_RECHECK_S)
                continue
            # Tiles show ~1 picture a second at tile size: the sub stream when the camera has one (a camera
            # without one answers ?stream=sub with its main stream).
            where = ws_url(url) + f"/live/{self.camera}?stream=sub"
            self.post_message(self.StreamNote("connecting", f"connecting to {where.split('://', 1)[-1]}…"))
            try:
                reason = await self._watch(where, backoff)
            except websockets.InvalidStatus as exc:
                reason = f"the node refused: HTTP {exc.response.status_code}"
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                reason = str(exc) or type(exc).__name__
            except ProtocolError as exc:
                reason = f"bad stream: {exc}"
            delay = backoff.next_delay()
            if self.down_reason is None:
                self.post_message(self.StreamNote("unreachable", f"unreachable: {reason}; retry in {delay:.0f} s"))
            await asyncio.sleep(delay)

    async def _watch(self, url: str, backoff: Backoff) -> str:
        """Read one connection until it ends; returns why it ended."""
        async with connect(url, open_timeout=OPEN_TIMEOUT_S, max_size=2**24, compression=None,
                           additional_headers=self.headers or None, ssl=client_ssl(url, self.ca)) as ws:
            receiver, throttle = LiveReceiver(), KeyframeThrottle()
            async for message in ws:
                event = receiver.receive(message)
                if isinstance(event, LiveFrame):
                    if throttle.admit(event):
                        backoff.reset()
                        self._offer(event)
                elif isinstance(event, LiveInit):
                    self.post_message(self.StreamNote(
                        "connecting", f"{event.width}x{event.height} @ {event.fps:g} fps, waiting for a keyframe…"))
                elif isinstance(event, LiveStatus):
                    self.post_message(self.StreamNote("down", f"camera {event.state}: {event.reason}"))
        return "the node closed the stream"

    @work(thread=True, exclusive=True, group="decode", exit_on_error=False)
    def _decode(self) -> None:
        worker = get_current_worker()
        decoder = KeyframeDecoder()
        while not worker.is_cancelled:
            try:
                frame = self._keyframes.get(timeout=0.25)
            except queue.Empty:
                continue
            try:
                image = decoder.decode(frame.data)
            except DecodeError as exc:
                self.post_message(self.StreamNote("unreachable", str(exc)))
                decoder = KeyframeDecoder()
                continue
            if not worker.is_cancelled:
                self.post_message(self.FrameReady(image, frame.capture_us))
