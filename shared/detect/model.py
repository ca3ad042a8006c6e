"""The built-in model, its checksum, and labels files."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

from shared.detect.result import DetectorError

MODELS_DIR = Path(__file__).resolve().parent / "models"
BUILTIN_MODEL = MODELS_DIR / "person-ssdlite.onnx"
BUILTIN_LABELS = MODELS_DIR / "person-ssdlite.txt"
BUILTIN_SHA256 = "9c4c19981aaf350b0bfb31c306eafb8fdd6939d74acb1d1a9c7e9d36b454b107"
"""SHA-256 of person-ssdlite.onnx as tools/convert_person_model.py made it (docs/objects.md)."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_builtin(path: Path = BUILTIN_MODEL, expected: str = BUILTIN_SHA256) -> str:
    """The built-in model's SHA-256, or a DetectorError when it is missing or not the file we shipped."""
    if not path.is_file():
        raise DetectorError(f"model file {path} does not exist: reinstall sht-cctv (the built-in model is "
                            "package data)")
    got = sha256_file(path)
    if got != expected:
        raise DetectorError(f"model file {path} has SHA-256 {got}, expected {expected}: reinstall sht-cctv")
    return got


def read_labels(path: Path) -> tuple[str, ...]:
    """One label a line; trailing blank lines are ignored, a blank line inside is an error (it would shift every
    class after it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DetectorError(f"labels file {path} does not exist") from None
    except UnicodeDecodeError:
        raise DetectorError(f"labels file {path} is not UTF-8 text (one label a line)") from None
    except OSError as exc:
        raise DetectorError(f"labels file {path} cannot be read: {exc.strerror or exc}") from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise DetectorError(f"labels file {path} is empty: one label a line")
    for number, line in enumerate(lines, 1):
        if not line:
            raise DetectorError(f"labels file {path}: line {number} is blank: one label a line, in class order")
    return tuple(lines)


def labels_from_metadata(metadata: dict[str, str]) -> tuple[str, ...] | None:
    """Labels an Ultralytics export keeps in the model (``names``: ``{0: 'person', 1: 'bicycle', ...}``)."""
    raw = metadata.get("names")
    if not raw:
        return None
    try:
        names = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return None
    if not isinstance(names, dict) or sorted(names) != list(range(len(names))):
        return None
    return tuple(str(names[i]) for i in range(len(names)))
