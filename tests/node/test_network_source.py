"""A network camera played by a real ffmpeg process on loopback (MPEG-TS over HTTP, ``-listen 1``):
the node passes it through, notices when it drops, reconnects, and the recording shows the gap."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import av
import pytest

from tests.node.media import ffmpeg, make_clip
from tests.system.conftest import free_port, get_json, processes, wait_for_health  # noqa: F401  (fixture)


class Camera:
    """An ffmpeg process serving a looping clip as a live MPEG-TS stream, to one client at a time."""

    def __init__(self, clip: Path, port: int) -> None:
        self.clip, self.port = clip, port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/live.ts"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [ffmpeg(), "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(self.clip),
             "-c", "copy", "-flush_packets", "1", "-f", "mpegts", "-listen", "1", self.url],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wait_until(url: str, check, timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        cam = get_json(url + "/health")["cameras"]["cam0"]
        if check(cam):
            return cam
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {cam}"
        time.sleep(0.1)


@pytest.mark.timeout(60)
def test_drop_and_reconnect(processes, tmp_path):  # noqa: F811
    clip = make_clip(tmp_path / "cam.ts", seconds=2, gop=5)  # keyframes every 0.5 s: quick resync
    camera = Camera(clip, free_port())
    camera.start()
    try:
        port, spool = free_port(), tmp_path / "spool"
        proc = processes.start("node", "node", "--id", "node0", "--host", "127.0.0.1", "--port", str(port),
                               "--no-auth", "--spool", str(spool), "--segment-seconds", "1",
                               "--camera", f"cam0=url:{camera.url}")
        url = f"http://127.0.0.1:{port}"
        wait_for_health(url, proc)
        up = wait_until(url, lambda c: c["state"] == "up" and c["frames_encoded"] >= 20, 10, "frames")
        assert (up["mode"], up["encoder"], up["reconnects"]) == ("passthrough", "passthrough", 0)

        camera.kill()
        down = wait_until(url, lambda c: c["state"] == "reconnecting", 8, "the drop to show")
        assert down["reconnects"] >= 1 and down["source_error"]
        # The last frame before the drop may still be on its way to the event loop when the capture thread
        # already says "reconnecting": count from a moment later.
        time.sleep(0.3)
        frames_at_drop = get_json(url + "/health")["cameras"]["cam0"]["frames_encoded"]
        time.sleep(1.2)  # a gap long enough to see in the recording
        assert get_json(url + "/health")["cameras"]["cam0"]["frames_encoded"] == frames_at_drop

        camera.start()
        back = wait_until(url, lambda c: c["state"] == "up" and c["frames_encoded"] >= frames_at_drop + 15, 15,
                          "the reconnect")
        assert back["source_error"]  # the last error stays visible after recovery
        processes.stop_all()
    finally:
        camera.kill()

    # Segments stop at the drop and resume after it: none spans the gap.
    spans = []
    for f in sorted((spool / "cam0").glob("*.mp4"), key=lambda p: int(p.stem)):
        with av.open(str(f)) as c:
            frames = sum(1 for p in c.demux(c.streams.video[0]) if p.size)
        header = (f.with_suffix(".json")).read_text()
        import json

        h = json.loads(header)
        spans.append((h["start_us"], h["end_us"], frames))
    gaps = [(b[0] - a[1]) / 1e6 for a, b in zip(spans, spans[1:], strict=False)]
    # The node waited 1.5 s with the camera gone; the frames after it are stamped by the stream's own clock
    # (anchored to the earliest arrival), so the recorded gap can come out a little under the wall-clock one.
    assert max(gaps) >= 1.0, (spans, gaps)
    assert sorted(gaps)[-2] < 0.5  # everything else is contiguous
