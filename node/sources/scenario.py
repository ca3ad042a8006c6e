"""Scenarios for the simulated camera: what moves where, and when.

A scenario is the simulated camera's ground truth. Positions are normalised
to 0..1 of the frame, sizes are pixels, times are seconds from stream start.
An object moves in a straight line (its centre) from ``from`` to ``to`` between
``start`` and ``end`` and is absent otherwise. The optional ``scene`` says what the
place looks like (brightness from top to bottom, buildings, a kerb, its colour,
fixtures such as doors or bay lines); without it the place is the street.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from shared.config import ConfigError, load_json_file
from shared.fields import FieldReader


@dataclass(frozen=True)
class Illumination:
    period_s: float = 120.0
    amplitude: float = 0.05  # fraction of full scale luma


@dataclass(frozen=True)
class MovingObject:
    start: float
    end: float
    size: tuple[float, float]  # pixels
    origin: tuple[float, float]  # normalised centre at ``start``
    target: tuple[float, float]  # normalised centre at ``end``
    luma: int

    def centre_at(self, t: float) -> tuple[float, float] | None:
        if not self.start <= t <= self.end:
            return None
        k = 0.0 if self.end == self.start else (t - self.start) / (self.end - self.start)
        return (self.origin[0] + (self.target[0] - self.origin[0]) * k,
                self.origin[1] + (self.target[1] - self.origin[1]) * k)


@dataclass(frozen=True)
class Distractor:
    """A region whose brightness oscillates (a flickering light, leaves): not an object."""

    rect: tuple[float, float, float, float]  # normalised x, y, w, h
    amplitude: float  # luma
    period_s: float


@dataclass(frozen=True)
class Fixture:
    """A static part of the place (a door, a bay line, a lawn): a rectangle of one luma, and of one colour if
    ``uv`` is given. Drawn once, with the background: it costs nothing per frame."""

    rect: tuple[float, float, float, float]  # normalised x, y, w, h
    luma: int
    uv: tuple[int, int] | None = None  # chroma (U, V); None: the scene's tint


@dataclass(frozen=True)
class Scene:
    """The static picture. The defaults are the street that every scenario without a ``scene`` shows."""

    top: float = 150.0  # luma of the top row; the brightness goes linearly to ``bottom``
    bottom: float = 90.0
    texture: float = 40.0  # amplitude of the coarse texture (walls, tarmac), luma
    buildings: int = 5  # darker blocks standing on ``horizon``
    horizon: float = 0.6  # normalised
    kerb: float | None = 0.75  # a bright line across at this height; None: none
    tint: tuple[int, int] = (120, 134)  # the chroma (U, V) the colour varies around
    fixtures: tuple[Fixture, ...] = ()


@dataclass(frozen=True)
class Scenario:
    seed: int = 0
    noise: float = 2.0  # sensor noise, standard deviation in luma steps
    illumination: Illumination = field(default_factory=Illumination)
    objects: tuple[MovingObject, ...] = ()
    distractors: tuple[Distractor, ...] = ()
    loop_s: float = 0.0  # if positive, the scenario's clock wraps around after this many seconds
    scene: Scene = field(default_factory=Scene)

    def scene_time(self, t: float) -> float:
        return t % self.loop_s if self.loop_s > 0 else t

    def boxes_at(self, t: float, width: int, height: int) -> list[tuple[int, int, int, int, int]]:
        """Ground truth: (object index, x0, y0, x1, y1) in pixels, clipped to the frame."""
        boxes = []
        t = self.scene_time(t)
        for i, obj in enumerate(self.objects):
            centre = obj.centre_at(t)
            if centre is None:
                continue
            cx, cy = centre[0] * width, centre[1] * height
            x0 = max(0, int(round(cx - obj.size[0] / 2)))
            y0 = max(0, int(round(cy - obj.size[1] / 2)))
            x1 = min(width, int(round(cx + obj.size[0] / 2)))
            y1 = min(height, int(round(cy + obj.size[1] / 2)))
            if x1 > x0 and y1 > y0:
                boxes.append((i, x0, y0, x1, y1))
        return boxes


SCENARIO_KEYS = {"loop_s", "seed", "noise", "illumination", "objects", "distractors", "description", "scene"}
SCENE_KEYS = {"top", "bottom", "texture", "buildings", "horizon", "kerb", "tint", "fixtures"}


def scene_from_json(r: FieldReader) -> Scene:
    r.reject_unknown(SCENE_KEYS)
    default = Scene()
    fixtures = []
    for f in r.children("fixtures", []):
        f.reject_unknown({"rect", "luma", "uv"})
        uv = f.pair("uv", minimum=0, maximum=255) if f.has("uv") else None
        fixtures.append(Fixture(
            rect=tuple(f.numbers("rect", 4, minimum=0, maximum=1)),  # type: ignore[arg-type]
            luma=f.integer("luma", minimum=0, maximum=255),
            uv=None if uv is None else (int(uv[0]), int(uv[1])),
        ))
    kerb = r.number("kerb", default.kerb, minimum=0, maximum=1, nullable=True)
    tint = r.pair("tint", default.tint, minimum=0, maximum=255)
    return Scene(
        top=float(r.number("top", default.top, minimum=0, maximum=255)),
        bottom=float(r.number("bottom", default.bottom, minimum=0, maximum=255)),
        texture=float(r.number("texture", default.texture, minimum=0, maximum=128)),
        buildings=r.integer("buildings", default.buildings, minimum=0, maximum=50),
        horizon=float(r.number("horizon", default.horizon, minimum=0.05, maximum=1)),
        kerb=None if kerb is None else float(kerb),
        tint=(int(tint[0]), int(tint[1])),
        fixtures=tuple(fixtures),
    )


def scenario_from_json(data: object, source: str) -> Scenario:
    r = FieldReader(data, source)
    r.reject_unknown(SCENARIO_KEYS)
    ill = r.child("illumination", {})
    ill.reject_unknown({"period_s", "amplitude"})
    objects = []
    for o in r.children("objects", []):
        o.reject_unknown({"start", "end", "size", "from", "to", "luma"})
        start = float(o.number("start", minimum=0))
        end = float(o.number("end", minimum=0))
        if end < start:
            raise o.error("end", f"must not be before start ({start}), got {end}")
        objects.append(MovingObject(
            start=start, end=end,
            size=o.pair("size", minimum=1, maximum=8192),
            origin=o.pair("from", minimum=0, maximum=1),
            target=o.pair("to", minimum=0, maximum=1),
            luma=o.integer("luma", 230, minimum=0, maximum=255),
        ))
    distractors = []
    for d in r.children("distractors", []):
        d.reject_unknown({"rect", "amplitude", "period_s"})
        rect = tuple(d.numbers("rect", 4, minimum=0, maximum=1))
        distractors.append(Distractor(
            rect=rect,  # type: ignore[arg-type]
            amplitude=float(d.number("amplitude", minimum=0, maximum=255)),
            period_s=float(d.number("period_s", minimum=0.01)),
        ))
    return Scenario(
        seed=r.integer("seed", 0, minimum=0),
        noise=float(r.number("noise", 2.0, minimum=0, maximum=64)),
        illumination=Illumination(
            period_s=float(ill.number("period_s", 120.0, minimum=0.01)),
            amplitude=float(ill.number("amplitude", 0.05, minimum=0, maximum=1)),
        ),
        objects=tuple(objects),
        distractors=tuple(distractors),
        loop_s=float(r.number("loop_s", 0.0, minimum=0)),
        scene=scene_from_json(r.child("scene", {})),
    )


def builtin_scenarios() -> list[str]:
    return sorted(p.name.removesuffix(".json") for p in resources.files("node.scenarios").iterdir()
                  if p.name.endswith(".json"))


def load_scenario(ref: str) -> Scenario:
    """Load a scenario from a JSON file path, or by the name of one shipped with the node."""
    path = Path(ref)
    if not path.exists() and ref in builtin_scenarios():
        resource = resources.files("node.scenarios") / f"{ref}.json"
        with resources.as_file(resource) as p:
            return scenario_from_json(load_json_file(p), f"scenario {ref!r}")
    if not path.exists():
        raise ConfigError(
            f"no such scenario file (built-in scenarios: {', '.join(builtin_scenarios())})",
            source=ref,
        )
    return scenario_from_json(load_json_file(path), str(path))
