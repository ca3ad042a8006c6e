"""Motion detection for camera nodes: two detectors, zones, and events with hysteresis.

Pure CPU code with no asyncio: the node calls it from a worker thread.
See docs/motion.md for the algorithms, parameters and measured accuracy.
"""

from node.motion.config import DetectorConfig, make_detector, make_tracker
from node.motion.events import EventTracker
from node.motion.grid import NO_MOTION, MotionSample
from node.motion.luma import LumaDetector, decimate, lores_size, lores_step
from node.motion.vectors import MotionVectorDetector
from node.motion.zones import Zone, parse_zones, zone_mask

__all__ = [
    "NO_MOTION", "DetectorConfig", "EventTracker", "LumaDetector", "MotionSample", "MotionVectorDetector",
    "Zone", "decimate", "lores_size", "lores_step", "make_detector", "make_tracker", "parse_zones", "zone_mask",
]
