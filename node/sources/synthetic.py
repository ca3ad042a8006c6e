"""A simulated CCTV camera: a textured static scene, sensor noise, slow light drift, movers.

Cheap by construction, since six of these run on two cores beside their
encoders: the background and a small bank of noise fields are rendered once;
each frame is then one pass that adds the illumination offset to a pre-noised
background, written straight into a fresh ``av.VideoFrame``, plus a few
rectangle fills for objects and distractors (~0.1 ms at 720p).
"""

from __future__ import annotations

import math
from dataclasses import replace
from urllib.parse import parse_qsl

import av
import numpy as np

from node.sources import register_source
from node.sources.base import FrameSource, SourceError, plane_view
from node.sources.scenario import Scenario, Scene, load_scenario
from shared.config import CameraConfig

NOISE_BANK = 8


def _smooth_field(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Low-frequency texture: random values on a coarse grid, bilinearly upsampled."""
    gh, gw = height // cell + 2, width // cell + 2
    grid = rng.random((gh, gw), dtype=np.float32)
    ys = np.linspace(0, gh - 2, height, dtype=np.float32)
    xs = np.linspace(0, gw - 2, width, dtype=np.float32)
    y0, x0 = ys.astype(np.int32), xs.astype(np.int32)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def render_background(rng: np.random.Generator, width: int, height: int, scene: Scene | None = None) -> np.ndarray:
    """A plausible static place in luma: a top-to-bottom gradient, textured walls, buildings, a kerb, fixtures.
    The default ``Scene`` is the street (the same picture for the same seed as before scenes could be given)."""
    scene = scene if scene is not None else Scene()
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    luma = scene.top + (scene.bottom - scene.top) * y + np.zeros((1, width), dtype=np.float32)
    luma += scene.texture * (_smooth_field(rng, height, width, max(8, width // 12)) - 0.5)
    fine = 14 * (_smooth_field(rng, height, width, max(2, width // 160)) - 0.5)
    luma += fine
    # Buildings: a few darker blocks along the horizon.
    horizon = int(height * scene.horizon + 1e-6)
    for _ in range(scene.buildings):
        x0 = int(rng.integers(0, width - width // 6))
        w = int(rng.integers(width // 12, width // 5))
        top = int(rng.integers(height // 8, max(height // 8 + 1, min(height // 3, horizon))))
        luma[top:horizon, x0 : x0 + w] -= float(rng.integers(20, 50))
    if scene.kerb is not None:
        kerb = int(height * scene.kerb)
        luma[kerb : kerb + max(2, height // 100), :] += 35  # kerb line
    for fixture in scene.fixtures:
        x0, y0, x1, y1 = _rect(fixture.rect, width, height)
        luma[y0:y1, x0:x1] = fixture.luma + fine[y0:y1, x0:x1]  # the fine texture kept: not a flat fill
    return np.clip(luma, 16, 235).astype(np.uint8)


def _rect(rect: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """A normalised (x, y, w, h) in pixels (x0, y0, x1, y1), clipped to the frame."""
    x, y, w, h = rect
    return (int(x * width), int(y * height), min(width, int((x + w) * width)), min(height, int((y + h) * height)))


class SyntheticSource(FrameSource):
    """Renders frames of a ``Scenario`` as YUV 4:2:0; frame ``i`` is at ``i / fps`` seconds."""

    sub_frame = None  # no picture of its own at the sub stream's size: the sub stream scales main

    def __init__(self, width: int, height: int, fps: float, scenario: Scenario | None = None,
                 phase_s: float = 0.0):
        if width % 2 or height % 2:
            raise ValueError(f"frame size {width}x{height} must be even for YUV 4:2:0")
        self.width, self.height, self.fps = width, height, fps
        self.phase_s = phase_s  # frame 0 shows the scenario at this time: cameras of one scene out of step
        self.scenario = scenario if scenario is not None else load_scenario("street")
        scene = self.scenario.scene
        rng = np.random.default_rng(self.scenario.seed)
        background = render_background(rng, width, height, scene).astype(np.int16)
        sigma = self.scenario.noise
        # Illumination is an offset of at most ``headroom`` luma steps, added in uint8:
        # keeping the noisy background inside [headroom, 255 - headroom] means it never wraps.
        self._headroom = math.ceil(self.scenario.illumination.amplitude * 255)
        low, high = min(self._headroom, 127), max(255 - self._headroom, 128)
        self._noisy = [
            np.clip(background + rng.normal(0, sigma, (height, width)).round().astype(np.int16),
                    low, high).astype(np.uint8)
            for _ in range(NOISE_BANK)
        ]
        tint = _smooth_field(rng, height // 2, width // 2, max(8, width // 20))
        self._u = np.clip(scene.tint[0] + 16 * tint, 0, 255).astype(np.uint8)
        self._v = np.clip(scene.tint[1] - 12 * tint, 0, 255).astype(np.uint8)
        for fixture in scene.fixtures:
            if fixture.uv is not None:
                x0, y0, x1, y1 = _rect(fixture.rect, width // 2, height // 2)
                self._u[y0:y1, x0:x1], self._v[y0:y1, x0:x1] = fixture.uv
        self._rng = rng

    def ground_truth(self, frame_index: int) -> list[tuple[int, int, int, int, int]]:
        return self.scenario.boxes_at(frame_index / self.fps + self.phase_s, self.width, self.height)

    def read(self, frame_index: int) -> av.VideoFrame:
        t = frame_index / self.fps + self.phase_s
        sc = self.scenario
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        luma = plane_view(frame, 0)
        ill = sc.illumination
        offset = round(self._headroom * math.sin(2 * math.pi * t / ill.period_s))
        noisy = self._noisy[int(self._rng.integers(NOISE_BANK))]
        if offset >= 0:
            np.add(noisy, np.uint8(offset), out=luma)
        else:
            np.subtract(noisy, np.uint8(-offset), out=luma)
        plane_view(frame, 1)[:] = self._u
        plane_view(frame, 2)[:] = self._v
        for dist in sc.distractors:
            x, y, w, h = dist.rect
            x0, y0 = int(x * self.width), int(y * self.height)
            x1, y1 = int((x + w) * self.width), int((y + h) * self.height)
            delta = int(round(dist.amplitude * math.sin(2 * math.pi * t / dist.period_s)))
            region = luma[y0:y1, x0:x1]
            np.clip(region.astype(np.int16) + delta, 0, 255, out=region, casting="unsafe")
        for index, x0, y0, x1, y1 in sc.boxes_at(t, self.width, self.height):
            obj = sc.objects[index]
            luma[y0:y1, x0:x1] = obj.luma
            # A darker band so the object has texture the encoder and detectors can track.
            band = max(1, (y1 - y0) // 5)
            luma[y0 + band : y0 + 2 * band, x0:x1] = obj.luma // 2
        return frame

    def close(self) -> None:
        pass


SYNTHETIC_OPTIONS = ("phase", "seed")


def open_synthetic(camera: CameraConfig, arg: str) -> SyntheticSource:
    """``synthetic`` (the built-in street scene) or ``synthetic:SCENARIO`` (a shipped scenario's name or a JSON
    file), with ``?seed=N`` (the same place rendered from another seed: texture, buildings, noise) and ``phase=S``
    (frame 0 shows the scenario S seconds in), e.g. ``synthetic:car_park?seed=3&phase=20``."""
    ref, _, query = arg.partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True))
    where = f"camera {camera.id}: source {camera.source!r}"
    if unknown := sorted(set(params) - set(SYNTHETIC_OPTIONS)):
        raise SourceError(f"{where}: unknown option {unknown[0]!r} (known: {', '.join(SYNTHETIC_OPTIONS)})")
    try:
        seed = int(params["seed"]) if "seed" in params else None
        phase = float(params.get("phase", "0"))
    except ValueError:
        seed, phase = -1, 0.0
    if (seed is not None and seed < 0) or not math.isfinite(phase) or phase < 0:
        raise SourceError(f"{where}: seed must be a whole number >= 0 and phase a number of seconds >= 0, "
                          f"got seed={params.get('seed')!r}, phase={params.get('phase')!r}")
    scenario = load_scenario(ref or "street")
    if seed is not None:
        scenario = replace(scenario, seed=seed)
    return SyntheticSource(camera.width, camera.height, camera.fps, scenario, phase_s=phase)


register_source("synthetic", open_synthetic, "'synthetic', 'synthetic:SCENARIO[?seed=N&phase=S]'")
