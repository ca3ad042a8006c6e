"""Privacy masks and the timestamp overlay, proven in the decoded output of a running camera."""

from __future__ import annotations

import asyncio
import time

import av
import numpy as np
import pytest

from node.capture.filters import FrameFilter, TimestampOverlay, rasterise
from node.capture.master import Camera
from shared.config import CameraConfig, node_config_from_json
from shared.fields import FieldError

W, H = 320, 240
TRIANGLE = ((0.55, 0.1), (0.95, 0.1), (0.95, 0.7))


def yuv(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The raw planes of a yuv420p frame (no range conversion, unlike ``format="gray"``)."""
    h, w = frame.height, frame.width
    raw = frame.to_ndarray()  # planar I420 as one (h * 3 / 2, w) array
    return raw[:h], raw[h : h + h // 4].reshape(h // 2, w // 2), raw[h + h // 4 :].reshape(h // 2, w // 2)


def erode(mask: np.ndarray, r: int) -> np.ndarray:
    """Pixels at least ``r`` away from the mask's edge (block edges blur in the encoder)."""
    padded = np.pad(mask, r)
    out = mask.copy()
    for dy in (-r, 0, r):
        for dx in (-r, 0, r):
            out &= padded[r + dy : r + dy + mask.shape[0], r + dx : r + dx + mask.shape[1]]
    return out


async def decoded_frames(camera: CameraConfig, seconds: float) -> list[av.VideoFrame]:
    cam = Camera(camera)
    sub = cam.subscribe("test", 1000)
    cam.start(asyncio.get_running_loop())
    await asyncio.sleep(seconds)
    await cam.stop()
    codec = av.CodecContext.create("h264", "r")
    frames = []
    while (unit := await sub.get()) is not None:
        frames += codec.decode(av.Packet(unit.data))
    return frames + list(codec.decode(None))


def test_masks_are_black_in_the_decoded_picture():
    rect = ((0.0, 0.0), (0.25, 0.0), (0.25, 0.5), (0.0, 0.5))
    camera = CameraConfig(id="cam0", source="synthetic:busy", width=W, height=H, fps=10, masks=(rect, TRIANGLE),
                          motion=False)
    frames = asyncio.run(decoded_frames(camera, 1.2))
    assert len(frames) >= 8
    inside = rasterise(TRIANGLE, W, H)
    assert inside is not None
    x0, y0, tri = inside
    for frame in frames[1:]:
        y, u, v = yuv(frame)
        # Interior pixels (edges blur in the encoder): black luma, neutral chroma.
        assert np.abs(y[2:118, 2:78].astype(int) - 16).max() <= 3
        assert np.abs(u[1:59, 1:39].astype(int) - 128).max() <= 3
        assert np.abs(v[1:59, 1:39].astype(int) - 128).max() <= 3
        core = erode(tri, 4)
        region = y[y0 : y0 + tri.shape[0], x0 : x0 + tri.shape[1]]
        assert np.abs(region[core].astype(int) - 16).max() <= 4
        # Outside the masks the scene is still there.
        assert y[130:, :].std() > 10 and not (~tri).all()


def test_unmasked_camera_is_untouched():
    frames = asyncio.run(decoded_frames(CameraConfig(id="cam0", width=W, height=H, fps=10, motion=False), 0.6))
    assert yuv(frames[1])[0][2:118, 2:78].std() > 5


def test_timestamp_shows_the_capture_time():
    overlay = TimestampOverlay(W, H)
    camera = CameraConfig(id="cam0", width=W, height=H, fps=10, timestamp=True, motion=False)
    before = time.time()
    frames = asyncio.run(decoded_frames(camera, 0.6))
    y = yuv(frames[2])[0].astype(int)
    # Render the expected text for each second the run touched; the decoded corner matches one of them.
    box = (slice(overlay.y0, overlay.y0 + overlay.glyph_h), slice(overlay.x0, overlay.x0 + 19 * overlay.glyph_w))
    errors = []
    for second in range(int(before) - 1, int(time.time()) + 2):
        expected = np.zeros((H, W), np.uint8)
        overlay.apply(expected, np.zeros((H // 2, W // 2), np.uint8), np.zeros((H // 2, W // 2), np.uint8),
                      second * 1_000_000)
        errors.append(np.abs(y[box] - expected[box].astype(int)).mean())
    assert min(errors) < 12, errors  # lossy, but the glyphs are there (a wrong second differs in whole digits)
    assert max(errors) > min(errors)


def test_polygon_rasterisation_and_mask_config():
    _, _, tri = rasterise(((0, 0), (1, 0), (0, 1)), 10, 10) or (0, 0, None)
    assert tri is not None and tri.sum() == 45  # pixel centres strictly below the diagonal
    assert rasterise(((2, 2), (3, 2), (3, 3)), 10, 10) is None  # entirely off-frame
    f = FrameFilter(8, 8, [((0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0))])
    frame = av.VideoFrame(8, 8, "yuv420p")
    for plane in frame.planes:
        plane.update(b"\xc8" * plane.buffer_size)
    f(frame, 0)
    y = yuv(frame)[0]
    assert (y[4:, 4:] == 16).all() and (y[:4, :] == 200).all()
    with pytest.raises(FieldError, match="exactly one of rect or polygon"):
        node_config_from_json({"id": "n", "cameras": [{"id": "c", "masks": [{}]}]}, "t")
