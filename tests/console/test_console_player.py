"""The console's playback ``Player`` against a real H.264 MP4 (tests/console/playback_clip.py), in a real thread.

15 fps, a keyframe every second, 24 s. Media time t shows capture time START + t.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from console.playback import DISPLAY_FPS, Picture, Pieces, PlaybackError, PlaybackSource, Player
from console.playback_source import fetch_sidecar, iso, recordings_url
from tests.console.playback_clip import make_clip

START_US = 1_795_700_000_000_000
FPS = 15


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", fps=FPS)


class Running:
    """A Player in its own thread, and every picture it showed."""

    def __init__(self, player: Player) -> None:
        self.player = player
        self.pictures: list[tuple[float, Picture]] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.player.run(self._stop.is_set)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def wait(self, condition: Callable[[], bool], seconds: float = 10.0, what: str = "") -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.01)

    def settle(self, after: int) -> Picture:
        """The picture shown once the player has answered a command sent when ``after`` had been shown."""
        self.wait(lambda: len(self.pictures) > after and self.player._commands.empty(), what="the answer")
        time.sleep(0.05)
        return self.pictures[-1][1]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def last(self) -> Picture:
        return self.pictures[-1][1]


@pytest.fixture
def play(clip: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(start_us: int | None = None, size: tuple[int, int] = (64, 36)) -> Running:
        source = PlaybackSource("cam0", str(clip), Pieces.one(START_US, START_US + 24_000_000), START_US,
                                START_US + 24_000_000, start_us=start_us)
        running: Running
        player = Player(source, lambda p: running.pictures.append((time.monotonic(), p)), size=size)
        running = Running(player)
        running._thread.start()
        started.append(running)
        running.wait(lambda: bool(running.pictures), what="the first picture")
        return running

    yield start
    for running in started:
        running.stop()


def test_plays_at_the_display_rate_and_converts_only_what_it_shows(play: Callable[..., Running]) -> None:
    running = play()
    assert running.last.media_s == 0.0 and running.last.capture_us == START_US
    time.sleep(2.0)
    running.stop()
    shown = list(running.pictures)
    distinct = len({id(p.image) for _, p in shown})
    rate = (len(shown) - 1) / (shown[-1][0] - shown[0][0])
    assert 0.7 * DISPLAY_FPS <= rate <= DISPLAY_FPS * 1.1, rate  # 15 fps footage, at most 10 pictures a second
    counters = running.player.counters
    assert counters.converted == distinct  # a frame converted to RGB is a frame shown
    assert counters.decoded >= 1.3 * counters.converted  # the frames between them were decoded, not converted
    assert shown[-1][1].image.size == (64, 36)  # scaled by the decoder's swscale to the size asked
    # Capture time moves with the wall clock at 1x.
    (t0, p0), (t1, p1) = shown[1], shown[-1]
    assert abs((p1.capture_us - p0.capture_us) / 1e6 - (t1 - t0)) < 0.35
    pairs = zip(shown, shown[1:], strict=False)
    assert all(b.media_s > a.media_s for (_, a), (_, b) in pairs if b.image is not a.image)


def test_pause_seek_and_step_land_on_the_right_frames(play: Callable[..., Running]) -> None:
    running = play(start_us=START_US + 5_000_000)
    assert running.last.capture_us == START_US + 5_000_000  # started at the capture time asked for
    player = running.player
    player.toggle_pause()
    paused = running.settle(len(running.pictures))
    assert paused.paused
    here = paused.media_s
    player.seek(10.0)
    landed = running.settle(len(running.pictures))
    assert landed.media_s == pytest.approx(here + 10.0, abs=0.5 / FPS)  # the frame at (or just before) it
    assert landed.capture_us == START_US + round(landed.media_s * 1e6)
    player.step(1)
    stepped = running.settle(len(running.pictures))
    assert stepped.media_s == pytest.approx(landed.media_s + 1 / FPS, abs=1e-3)
    player.step(1)
    player.step(-1)
    back = running.settle(len(running.pictures) + 1)
    assert back.media_s == pytest.approx(stepped.media_s, abs=1e-3)
    player.seek(-10.0)
    assert running.settle(len(running.pictures)).media_s == pytest.approx(stepped.media_s - 10.0, abs=0.5 / FPS)
    player.seek(-100.0)
    assert running.settle(len(running.pictures)).media_s == 0.0  # not before the start
    time.sleep(0.3)
    assert running.last.media_s == 0.0 and running.last.paused  # paused: nothing moves


def test_above_2x_only_keyframes_are_decoded(play: Callable[..., Running]) -> None:
    running = play()
    player = running.player
    for _ in range(3):
        player.change_speed(1)  # 2x, 4x, 8x
    running.settle(len(running.pictures) + 2)
    assert running.last.speed == 8
    decoded, mark = player.counters.decoded, len(running.pictures)
    time.sleep(1.5)
    fresh = [p for _, p in running.pictures[mark:]][1:]  # the first may be the frame decoded before the change
    keyframes = {round(p.media_s, 3) for p in fresh}
    assert keyframes and all(abs(t - round(t)) < 1e-3 for t in keyframes), keyframes  # whole seconds: keyframes
    assert len(keyframes) >= 6  # ~8 a second of wall time at 8x
    assert player.counters.decoded - decoded <= len(keyframes) + 1  # nothing but the keyframes went in
    player.change_speed(-3)  # back to 1x: every frame decoded again, from the keyframe at or before here
    slow = running.settle(len(running.pictures))
    assert slow.speed == 1
    time.sleep(0.5)
    assert any(abs(p.media_s - round(p.media_s)) > 1e-3 for _, p in running.pictures[-3:])


def test_the_end_stops_and_space_starts_again(play: Callable[..., Running]) -> None:
    running = play(start_us=START_US + 23_000_000)
    running.wait(lambda: running.last.ended, 5, "the end")
    assert running.last.media_s == pytest.approx(24.0 - 1 / FPS, abs=1e-3)
    running.player.toggle_pause()
    again = running.settle(len(running.pictures))
    assert again.media_s == 0.0 and not again.ended and not again.paused


def test_an_unreadable_source_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not an mp4 at all" * 100)
    source = PlaybackSource("cam0", str(bad), Pieces.one(START_US, START_US), START_US, START_US + 1)
    with pytest.raises(PlaybackError, match="cannot open the footage of cam0") as caught:
        Player(source, lambda p: None).run(lambda: False)
    assert "\n" not in str(caught.value)


def test_pieces_map_media_time_to_capture_time_across_a_gap() -> None:
    sidecar = {"camera": "cam0", "start": iso(START_US), "pieces": [
        {"media_s": 0.0, "start": iso(START_US), "end": iso(START_US + 10_000_000), "frames": 150},
        {"media_s": 10.0, "start": iso(START_US + 60_000_000), "end": iso(START_US + 70_000_000), "frames": 150}]}
    pieces = Pieces.from_sidecar(sidecar)
    assert pieces.capture_us(0.0) == START_US
    assert pieces.capture_us(9.5) == START_US + 9_500_000
    assert pieces.capture_us(12.25) == START_US + 62_250_000  # after the gap
    assert pieces.media_s(START_US + 62_250_000) == 12.25
    assert pieces.media_s(START_US + 30_000_000) == 10.0  # in the gap: the footage after it


def test_a_store_without_http_playback_means_an_export(tmp_path: Path) -> None:
    from tests.system.conftest import free_port

    url = recordings_url(f"ws://127.0.0.1:{free_port()}", "cam 0", START_US, START_US + 1_000_000, "json")
    assert url.startswith("http://127.0.0.1:")
    assert "/recordings/cam%200.json?from=2026-11-26T13%3A33%3A20.000000Z" in url
    assert fetch_sidecar(url, {}, None) is None  # nothing listens: the console exports instead


def test_footage_over_http_sends_the_token_in_a_header(clip: Path) -> None:
    """FFmpeg's http protocol with the ``headers`` option, against a real HTTP server that wants the token."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from console.playback_source import ffmpeg_options

    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            seen.append(self.headers.get("Authorization"))
            if self.headers.get("Authorization") != "Bearer s3cret":
                self.send_error(401, "a viewer token is needed")
                return
            body = clip.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/recordings/cam0.mp4"
    try:
        for headers in ({"Authorization": "Bearer s3cret"}, {}):
            pictures: list[Picture] = []
            source = PlaybackSource("cam0", url, Pieces.one(START_US, START_US), START_US, START_US + 1,
                                    options=ffmpeg_options(headers, url, None))
            stop = threading.Event()
            player = Player(source, lambda p: (pictures.append(p), stop.set()))  # noqa: B023 - this loop's
            if headers:
                player.run(stop.is_set)
                assert pictures and pictures[0].capture_us == START_US
            else:
                with pytest.raises(PlaybackError, match="401"):
                    player.run(stop.is_set)
    finally:
        server.shutdown()
    assert seen[0] == "Bearer s3cret" and seen[-1] is None


def test_half_blocks_one_cell_per_column_and_two_rows_of_pixels_equal_cells_merged() -> None:
    from PIL import Image as PILImage

    from console.widgets.halfblock import halfblock_strips

    image = PILImage.new("RGB", (5, 3), (255, 0, 0))
    image.putpixel((4, 0), (0, 0, 255))  # upper right: blue over red
    image.putpixel((0, 1), (255, 255, 255))  # lower left: red over white
    strips = halfblock_strips(image)
    assert len(strips) == 2 and all(s.cell_length == 5 for s in strips)  # the odd last row over black
    first = list(strips[0])
    assert [(seg.text, seg.style.color.triplet, seg.style.bgcolor.triplet) for seg in first] == [  # type: ignore[union-attr]
        ("▀", (255, 0, 0), (255, 255, 255)), ("▀▀▀", (255, 0, 0), (255, 0, 0)), ("▀", (0, 0, 255), (255, 0, 0))]
    assert [(seg.text, seg.style.bgcolor.triplet) for seg in strips[1]] == [("▀▀▀▀▀", (0, 0, 0))]  # type: ignore[union-attr]
