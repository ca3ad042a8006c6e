"""LocalDetector: the built-in person model in a real child process; garbage frames, a child killed with
SIGKILL (mid-frame and idle), a hung child, a model that does not load."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from shared.detect.result import DetectorError
from store.detect.runner import DetectFailed, LocalDetector

VTEST = Path(__file__).parents[1] / "data" / "vtest.mp4"
BLANK = np.zeros((360, 640, 3), dtype=np.uint8)


def people_frame() -> np.ndarray:
    """The first frame of OpenCV's vtest excerpt: pedestrians (a person >= 0.75 in every frame of it)."""
    with av.open(str(VTEST)) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="rgb24")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def shared_block_exists(name: str) -> bool:
    return Path("/dev/shm", name).exists()


@pytest.fixture
async def detector():
    made: list[LocalDetector] = []

    async def make(**kwargs) -> LocalDetector:
        det = LocalDetector(**kwargs)
        made.append(det)
        await det.start()
        return det

    yield make
    for det in made:
        await det.close()


async def test_finds_people_in_a_child_process_and_cleans_up(detector):
    det = await detector()
    assert det.info["provider"] == "CPUExecutionProvider" and det.info["device"] == "cpu"
    assert det.info["labels"] == ["person"] and det.info["input_size"] == [300, 300] and det.info["threads"] == 1
    assert det.info["builtin"] and det.info["model"].endswith("person-ssdlite.onnx")
    pid = det.pid
    assert pid is not None and pid != os.getpid() and alive(pid) and not det.busy
    found = await det.detect(people_frame())
    assert any(d.label == "person" and d.score >= 0.7 for d in found)
    assert all(0 <= v <= 1 for d in found for v in d.box)
    assert await det.detect(BLANK, camera="cam0", capture_us=5) == []  # the call RemoteDetectors takes too
    assert await det.detect(np.zeros((1080, 1920, 3), dtype=np.uint8)) == []  # a bigger frame: a bigger block
    low = await det.detect(people_frame(), min_score=0.05)
    assert len(low) >= len(found)
    stats = det.stats()
    assert stats["frames"] == 4 and stats["errors"] == 0 and stats["restarts"] == 0 and stats["last_error"] is None
    assert stats["inference_ms_p50"] > 0 and stats["state"] == "ready" and stats["pid"] == pid
    block = det._shared.name
    await det.close()
    assert not alive(pid) and det.state == "closed" and not shared_block_exists(block)
    with pytest.raises(DetectFailed, match="closed"):
        await det.detect(BLANK)


def test_the_store_process_never_imports_onnxruntime():
    code = ("import asyncio, sys, numpy as np\n"
            "from store.detect.runner import LocalDetector\n"
            "async def main():\n"
            "    det = LocalDetector()\n"
            "    await det.start()\n"
            "    await det.detect(np.zeros((64, 64, 3), dtype=np.uint8))\n"
            "    await det.close()\n"
            "asyncio.run(main())\n"
            "print('onnxruntime' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    assert "leaked" not in out.stderr  # the shared-memory block was unlinked, not left to the resource tracker


@pytest.mark.parametrize("garbage", [
    np.zeros((10, 10), dtype=np.uint8),
    np.zeros((100, 100, 4), dtype=np.uint8),
    np.zeros((20, 20, 3), dtype=np.float32),
    np.zeros((0, 0, 3), dtype=np.uint8),
], ids=["2d", "rgba", "float", "empty"])
async def test_a_garbage_frame_fails_that_frame_only(detector, garbage):
    det = await detector()
    pid = det.pid
    with pytest.raises(DetectFailed, match="a frame must be RGB uint8"):
        await det.detect(garbage)
    assert det.pid == pid and det.stats()["errors"] == 1 and det.restarts == 0 and not det.busy
    assert "a frame must be RGB uint8" in det.last_error
    assert await det.detect(BLANK) == []


async def test_objects_that_are_not_frames_are_refused_in_the_store(detector):
    det = await detector()
    with pytest.raises(DetectFailed, match="RGB uint8 array"):
        await det.detect(np.array([object()]))
    assert det.errors == 1 and det.restarts == 0 and await det.detect(BLANK) == []


async def test_child_killed_mid_frame_fails_the_frame_at_once_and_restarts(detector):
    det = await detector(timeout_s=30.0, _debug_sleep_s=3.0)
    det._debug_sleep_s = 0.0  # the restarted child answers at once
    old = det.pid
    task = asyncio.create_task(det.detect(BLANK))
    await asyncio.sleep(0.5)
    assert det.busy
    started = time.monotonic()
    os.kill(old, signal.SIGKILL)
    with pytest.raises(DetectFailed, match="died on a frame"):
        await task
    assert time.monotonic() - started < 5  # seen on the pipe, not after the 30 s timeout
    assert det.restarts == 1 and det.busy
    with pytest.raises(DetectFailed, match="restarting"):
        await det.detect(BLANK)
    await det.wait_ready(60)
    assert det.pid != old and not alive(old)
    assert "killed by signal 9" in det.last_error
    assert await det.detect(BLANK) == []
    assert det.stats()["errors"] == 1 and det.stats()["frames"] == 1  # a refusal while restarting is no error


async def test_child_killed_while_idle_is_restarted_before_the_next_frame(detector):
    det = await detector()
    old = det.pid
    os.kill(old, signal.SIGKILL)
    await asyncio.sleep(0.2)
    assert det.restarts == 1 and det.state in ("restarting", "ready")
    await det.wait_ready(60)
    assert det.pid != old and "died while idle" in det.last_error
    assert await det.detect(BLANK) == []


async def test_hung_child_is_killed_after_timeout_and_restarted(detector):
    det = await detector(timeout_s=1.0, _debug_sleep_s=60.0)
    det._debug_sleep_s = 0.0
    old = det.pid
    started = time.monotonic()
    with pytest.raises(DetectFailed, match="no answer within 1 s: the detector process was killed"):
        await det.detect(BLANK)
    assert 1.0 <= time.monotonic() - started < 3
    await det.wait_ready(60)
    assert not alive(old) and det.pid != old
    assert det.stats()["restarts"] == 1 and det.stats()["errors"] == 1
    assert await det.detect(BLANK) == []


async def test_a_cancelled_frame_keeps_the_detector_busy_until_answered(detector):
    det = await detector(timeout_s=10.0, _debug_sleep_s=1.0)
    task = asyncio.create_task(det.detect(BLANK))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert det.busy
    with pytest.raises(DetectFailed, match="busy"):
        await det.detect(BLANK)
    deadline = time.monotonic() + 10
    while det.busy and time.monotonic() < deadline:  # noqa: ASYNC110 (polling a plain attribute)
        await asyncio.sleep(0.05)
    assert not det.busy and det.restarts == 0
    assert await det.detect(BLANK) == []


async def test_a_cancelled_frame_on_a_hung_child_still_restarts_it(detector):
    det = await detector(timeout_s=1.0, _debug_sleep_s=60.0)
    det._debug_sleep_s = 0.0
    old = det.pid
    task = asyncio.create_task(det.detect(BLANK))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(1.5)
    assert det.restarts == 1
    await det.wait_ready(60)
    assert not alive(old) and await det.detect(BLANK) == []


def probe_error(*args: str) -> str:
    code = f"import sys; from sht.cli import main; sys.exit(main({['detect', '--probe', *args]!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).parents[2])
    assert out.returncode == 2
    return out.stderr.strip().removeprefix("sht: error: ")


@pytest.mark.parametrize("case", ["missing", "corrupt"])
async def test_a_model_that_does_not_load_fails_start_with_the_probe_message(tmp_path, case):
    model = tmp_path / "model.onnx"
    if case == "corrupt":
        model.write_bytes(b"\x08\x07garbage" * 100)
    det = LocalDetector(str(model), str(tmp_path / "labels.txt"))
    with pytest.raises(DetectorError) as err:
        await det.start()
    message = str(err.value)
    assert "\n" not in message and str(model) in message
    assert message == probe_error("--model", str(model), "--labels", str(tmp_path / "labels.txt"))
    assert det.state == "closed" and det.pid is None


async def test_start_failure_for_an_unknown_device():
    det = LocalDetector(device="gpu")
    with pytest.raises(DetectorError, match="device 'gpu' is unknown"):
        await det.start()


async def test_detect_before_start_fails():
    det = LocalDetector()
    with pytest.raises(DetectFailed, match="the detector is new"):
        await det.detect(BLANK)
    assert json.dumps(det.stats())  # health can always show it
