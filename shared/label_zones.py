"""Zones that require labels: may an object with this label, at this box, label an event?

A node's config may give an include zone ``"objects": ["person"]``
(node/motion/zones.py); the node reports those zones in its health per camera
(``label_zones``, shared/protocol/health.py ``LabelZone``), and the store asks
``LabelZones.allows(label, box)`` before it gives an event a label.

The rule (as Frigate's zones with ``objects``): where a camera has no such zone,
every label is allowed anywhere. Where it has at least one, a label counts only
when the bottom-centre of the object's box (where a person stands or a car
touches the ground) lies inside a zone that lists that label; a label that no
zone lists is not allowed anywhere on that camera. A point exactly on a zone's
edge may fall either way (even-odd rule, as the node's motion mask).
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.protocol.health import CameraHealth, LabelZone

Box = tuple[float, float, float, float]  # x, y, w, h, normalised, origin top-left
Point = tuple[float, float]


def point_in_polygon(x: float, y: float, polygon: Sequence[Point]) -> bool:
    """Even-odd rule: a ray from (x, y) towards +x crosses the polygon's edges an odd number of times."""
    inside = False
    for (x1, y1), (x2, y2) in zip(polygon, [*polygon[1:], polygon[0]], strict=True):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def bottom_centre(box: Box) -> Point:
    x, y, w, h = box
    return x + w / 2, y + h


@dataclass(frozen=True)
class LabelZones:
    """One camera's zones that require labels (empty: no requirement)."""

    zones: tuple[LabelZone, ...] = ()

    @classmethod
    def from_health(cls, camera_health: CameraHealth | None) -> LabelZones:
        """From the camera's part of its node's health; a node older than label zones (or none heard from yet)
        reports none, so nothing is required."""
        if camera_health is None or camera_health.label_zones is None:
            return cls()
        return cls(camera_health.label_zones)

    @property
    def labels(self) -> frozenset[str]:
        """Every label some zone requires."""
        return frozenset(label for zone in self.zones for label in zone.objects)

    def allows(self, label: str, box: Box) -> bool:
        """May an object labelled ``label`` whose box is ``box`` give its label to an event?"""
        if not self.zones:
            return True
        x, y = bottom_centre(box)
        return any(label in zone.objects and point_in_polygon(x, y, zone.points) for zone in self.zones)
