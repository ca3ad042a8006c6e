"""A camera's motion-detection settings (its ``"motion": {...}`` JSON object) and the detector factory.

::

    "motion": {
      "detector": "luma",          # or "vectors"
      "sensitivity": 0.5,          # 0 = least sensitive, 1 = most
      "min_area": 0.0005,          # fraction of the (zoned) picture that must move
      "start_frames": 3,           # consecutive moving frames before an event starts
      "quiet_s": 2.0,              # seconds without motion before it ends
      "zones": [{"mode": "exclude", "rect": [0.7, 0.05, 0.1, 0.15]}]
    }
"""

from __future__ import annotations

from dataclasses import dataclass

from node.motion.events import DEFAULT_QUIET_S, DEFAULT_START_FRAMES, EventTracker
from node.motion.luma import LumaDetector, lores_size
from node.motion.vectors import MotionVectorDetector
from node.motion.zones import Zone, parse_zones
from shared.fields import FieldReader

KINDS = ("luma", "vectors")
DEFAULT_KIND = "luma"  # chosen from `just bench motion`: see docs/motion.md
DEFAULT_SENSITIVITY = 0.5
DEFAULT_MIN_AREA = 0.0005  # ~2 cells of 80x45: a person 20 m away in a 720p wide shot
MOTION_KEYS = {"detector", "sensitivity", "min_area", "start_frames", "quiet_s", "zones"}

Detector = LumaDetector | MotionVectorDetector


@dataclass(frozen=True)
class DetectorConfig:
    kind: str = DEFAULT_KIND
    sensitivity: float = DEFAULT_SENSITIVITY
    min_area: float = DEFAULT_MIN_AREA
    zones: tuple[Zone, ...] = ()
    start_frames: int = DEFAULT_START_FRAMES
    quiet_s: float = DEFAULT_QUIET_S

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"detector kind must be one of {KINDS}, got {self.kind!r}")

    @classmethod
    def from_json(cls, data: object, source: str, path: str = "motion") -> DetectorConfig:
        """Parse a ``"motion"`` object; errors are ``FieldError`` naming e.g. ``cameras[0].motion.quiet_s``."""
        r = FieldReader(data, source, path)
        r.reject_unknown(MOTION_KEYS)
        return cls(
            kind=r.choice("detector", KINDS, DEFAULT_KIND),
            sensitivity=float(r.number("sensitivity", DEFAULT_SENSITIVITY, minimum=0, maximum=1)),
            min_area=float(r.number("min_area", DEFAULT_MIN_AREA, minimum=0, maximum=1)),
            zones=parse_zones(r),
            start_frames=r.integer("start_frames", DEFAULT_START_FRAMES, minimum=1, maximum=100),
            quiet_s=float(r.number("quiet_s", DEFAULT_QUIET_S, minimum=0, maximum=600)),
        )


def make_detector(config: DetectorConfig, width: int, height: int, fps: float = 15.0) -> Detector:
    """The detector for a camera of ``width`` x ``height`` (the encoded size) at ``fps``.

    A ``LumaDetector`` takes the decimated Y plane (``detect_frame(y_plane)`` does the
    decimation, or ``detect(lores)`` when the camera gives a lores stream of
    ``lores_size(width, height)``); a ``MotionVectorDetector`` takes the encoded access
    units (``feed``). ``detector.needs`` says which: ``"luma"`` or ``"h264"``.
    """
    if config.kind == "luma":
        w, h = lores_size(width, height)
        return LumaDetector(w, h, config.sensitivity, config.min_area, config.zones, fps)
    return MotionVectorDetector(width, height, config.sensitivity, config.min_area, config.zones, fps)


def make_tracker(config: DetectorConfig, camera: str, node: str) -> EventTracker:
    return EventTracker(camera, node, config.start_frames, config.quiet_s)
