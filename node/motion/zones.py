"""Include and exclude zones: rectangles or polygons in normalised coordinates.

Zones are rasterised once, to a boolean mask over the detector's cell grid, so
per frame they cost one ``&``. The two kinds round differently on purpose: a
cell counts as *included* when at least half of it lies inside an include zone,
but it is *excluded* as soon as any part of it touches an exclude zone; an
exclusion drawn tightly around a flickering lamp must also silence the cells
the lamp only half covers, or the lamp still triggers.

JSON form (inside a camera's ``"motion"`` object)::

    "zones": [
      {"mode": "exclude", "rect": [0.70, 0.05, 0.10, 0.15]},
      {"mode": "include", "polygon": [[0, 0.4], [1, 0.4], [1, 1], [0, 1]]},
      {"mode": "include", "rect": [0, 0.6, 0.5, 0.4], "objects": ["person"]},
      {"mode": "include", "rect": [0.6, 0.5, 0.4, 0.5], "name": "door"}
    ]

An include zone may require labels (``"objects"``): it still counts for motion
like any include zone, and the node reports it in its health (``label_zones``)
so the store gives an event one of those labels only for an object whose box's
bottom-centre lies inside it (shared/label_zones.py, docs/objects.md). An include zone may have a ``"name"``:
the node reports its named zones in its health (``zones``), and the store says which of them an event lies in
(the event object's ``zones``; the alert rules' ``notify_zones``: docs/integrations.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from node.motion.grid import CellGeometry
from shared.fields import FieldReader
from shared.protocol.health import MAX_LABEL_ZONES, MAX_ZONE_POINTS, LabelZone, NamedZone
from shared.settings import check_labels, label_problem

MODES = ("include", "exclude")
SUBSAMPLES = 5  # per cell side; the outer samples sit just inside the cell's edges


@dataclass(frozen=True)
class Zone:
    include: bool
    points: tuple[tuple[float, float], ...]  # polygon vertices, normalised x, y, in order
    objects: tuple[str, ...] = ()  # labels this (include) zone requires; () for a plain zone
    name: str | None = None  # an include zone's name: events in it say so (their ``zones``, docs/integrations.md)

    @classmethod
    def rect(cls, x: float, y: float, w: float, h: float, *, include: bool = False,
             objects: Sequence[str] = (), name: str | None = None) -> Zone:
        return cls(include, ((x, y), (x + w, y), (x + w, y + h), (x, y + h)), tuple(objects), name)

    @classmethod
    def polygon(cls, points: Sequence[tuple[float, float]], *, include: bool = False,
                objects: Sequence[str] = (), name: str | None = None) -> Zone:
        if len(points) < 3:
            raise ValueError(f"a polygon needs at least 3 points, got {len(points)}")
        return cls(include, tuple((float(x), float(y)) for x, y in points), tuple(objects), name)

    def contains(self, px: np.ndarray, py: np.ndarray) -> np.ndarray:
        """Even-odd point-in-polygon test, vectorised over the points."""
        inside = np.zeros(px.shape, dtype=bool)
        pts = self.points
        for (x1, y1), (x2, y2) in zip(pts, pts[1:] + pts[:1], strict=True):
            if y1 == y2:
                continue  # a horizontal edge never crosses a horizontal ray
            crosses = (y1 > py) != (y2 > py)
            x_at = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
            inside ^= crosses & (px < x_at)
        return inside


def zone_mask(zones: Sequence[Zone], geometry: CellGeometry) -> np.ndarray:
    """Boolean (rows, cols) mask of the cells motion may count in."""
    x0, x1, y0, y1 = geometry.extents()
    f = np.linspace(0.02, 0.98, SUBSAMPLES)
    # Sample points of every cell, both of shape (rows, cols, S, S).
    sx = (x0[:, None] + (x1 - x0)[:, None] * f)[None, :, None, :]
    sy = (y0[:, None] + (y1 - y0)[:, None] * f)[:, None, :, None]
    px, py = np.broadcast_arrays(sx, sy)
    shape = px.shape
    includes = [z for z in zones if z.include]
    if includes:
        inside = np.zeros(shape, dtype=bool)
        for z in includes:
            inside |= z.contains(px, py)
        mask = inside.mean(axis=(2, 3)) >= 0.5
    else:
        mask = np.ones((geometry.rows, geometry.cols), dtype=bool)
    for z in zones:
        if not z.include:
            mask &= ~z.contains(px, py).any(axis=(2, 3))
    return mask


def label_zones(zones: Sequence[Zone]) -> tuple[LabelZone, ...]:
    """The zones that require labels, as the node's health reports them (a rect reaching past the picture's
    edge, which the config allows, is cut at the edge: the same rectangle where it matters)."""
    return tuple(LabelZone(z.objects, tuple((min(x, 1.0), min(y, 1.0)) for x, y in z.points))
                 for z in zones if z.objects)


def named_zones(zones: Sequence[Zone]) -> tuple[NamedZone, ...]:
    """The named include zones, as the node's health reports them (cut at the picture's edge, like label zones)."""
    return tuple(NamedZone(z.name, tuple((min(x, 1.0), min(y, 1.0)) for x, y in z.points))
                 for z in zones if z.name is not None)


def _name(z: FieldReader, include: bool, taken: Sequence[Zone]) -> str | None:
    if not z.has("name"):
        return None
    if not include:
        raise z.error("name", "only an include zone has a name (events in it say so); use \"mode\": \"include\"")
    name = z.data["name"]
    if (problem := label_problem(name)) is not None:
        raise z.error("name", problem.replace("a label", "a zone's name"))
    if any(zone.name == name for zone in taken):
        raise z.error("name", f"another zone of this camera is named {name!r}")
    if sum(1 for zone in taken if zone.name is not None) >= MAX_LABEL_ZONES:
        raise z.error("name", f"at most {MAX_LABEL_ZONES} zones of a camera can have a name")
    return str(name)


def _objects(z: FieldReader, include: bool) -> tuple[str, ...]:
    if not z.has("objects"):
        return ()
    if not include:
        raise z.error("objects", "only an include zone can require labels; use \"mode\": \"include\"")
    try:
        objects = check_labels(z.data["objects"], "objects")
    except ValueError as exc:
        raise z.error("objects", str(exc)) from None
    if not objects:
        raise z.error("objects", "must name at least one label, e.g. [\"person\"] (or leave it out)")
    return tuple(objects)


def parse_zones(reader: FieldReader, key: str = "zones") -> tuple[Zone, ...]:
    """Zones from JSON; a malformed one raises ``FieldError`` naming e.g. ``motion.zones[1].polygon``."""
    zones: list[Zone] = []
    for z in reader.children(key, []):
        z.reject_unknown({"mode", "rect", "polygon", "objects", "name"})
        include = z.choice("mode", MODES) == "include"
        objects = _objects(z, include)
        name = _name(z, include, zones)
        if objects and sum(1 for zone in zones if zone.objects) >= MAX_LABEL_ZONES:
            raise z.error("objects", f"at most {MAX_LABEL_ZONES} zones of a camera can require labels")
        if z.has("rect") == z.has("polygon"):
            raise z.error("rect", "give exactly one of 'rect' [x, y, w, h] or 'polygon' [[x, y], ...]")
        if z.has("rect"):
            x, y, w, h = z.numbers("rect", 4, minimum=0, maximum=1)
            if w <= 0 or h <= 0:
                raise z.error("rect", f"width and height must be positive, got {w} x {h}")
            zones.append(Zone.rect(x, y, w, h, include=include, objects=objects, name=name))
            continue
        raw = z.data["polygon"]
        if not isinstance(raw, list) or len(raw) < 3:
            raise z.error("polygon", f"must be an array of at least 3 [x, y] points, got {raw!r}")
        if (objects or name is not None) and len(raw) > MAX_ZONE_POINTS:
            raise z.error("polygon", f"a zone with labels or a name has at most {MAX_ZONE_POINTS} points, "
                          f"got {len(raw)}")
        points: list[tuple[float, float]] = []
        for i, p in enumerate(raw):
            if not (isinstance(p, list) and len(p) == 2 and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in p)):
                raise z.error("polygon", f"point {i} must be [x, y] with both in 0..1, got {p!r}")
            points.append((float(p[0]), float(p[1])))
        zones.append(Zone.polygon(points, include=include, objects=objects, name=name))
    return tuple(zones)
