"""What a detector finds, and the one error it raises."""

from __future__ import annotations

from dataclasses import dataclass


class DetectorError(Exception):
    """A model, labels file, device or frame the detector cannot use: one line naming the file and the fault."""


@dataclass(frozen=True)
class Detection:
    """One object in one frame: ``box`` is (x, y, w, h), each a fraction of the frame's width or height."""

    label: str
    score: float
    box: tuple[float, float, float, float]

    def to_json(self) -> dict[str, object]:
        return {"label": self.label, "score": round(self.score, 4), "box": [round(v, 5) for v in self.box]}
