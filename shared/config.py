"""The node's JSON configuration, with errors that name the file and the field.

Read with ``shared.fields.FieldReader``: a bad field raises ``FieldError`` with its
dotted path (``cameras[1].fps``) and the file it came from, so an operator can fix
the file without reading our code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.fields import FieldError, FieldReader
from shared.ids import check_id
from shared.store_list import StoreListError, joined, parse_store_list


class ConfigError(FieldError):
    """A configuration file that cannot be read or used; ``FieldReader`` raises the base ``FieldError``."""


def load_json_file(path: str | Path) -> Any:
    """Read and parse a JSON file, turning every failure into a ``ConfigError``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read file ({exc.strerror or exc})", source=str(path)) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", source=str(path)
        ) from exc


def parse_size(text: str, what: str = "size") -> tuple[int, int]:
    """Parse ``1280x720`` into (width, height); both even, as YUV 4:2:0 needs."""
    try:
        w_text, h_text = text.lower().split("x")
        width, height = int(w_text), int(h_text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not WIDTHxHEIGHT, e.g. 1280x720") from None
    if not (16 <= width <= 7680 and 16 <= height <= 4320) or width % 2 or height % 2:
        raise ValueError(f"{what} {text!r} must be even numbers between 16x16 and 7680x4320")
    return width, height


BITS_PER_PIXEL = 0.15  # default bitrate cap: ~2 Mbit/s for 720p at 15 fps


def default_bitrate(width: int, height: int, fps: float) -> int:
    return int(width * height * fps * BITS_PER_PIXEL)


@dataclass(frozen=True)
class CameraConfig:
    id: str
    source: str = "synthetic"
    width: int = 1280
    height: int = 720
    fps: int = 15
    keyframe_interval_s: float = 1.0
    bitrate_bps: int | None = None  # the encoder's cap; None: default_bitrate(width, height, fps)
    motion: Any = None  # the "motion" object (node/motion/config.py), None for defaults, False for off
    codec: str = "h264"  # or "h265" (storage savings; see docs/cameras.md)
    encoder: str | None = None  # force an FFmpeg encoder (e.g. "libx264"); None: probe (node/capture/encoders.py)
    masks: tuple[tuple[tuple[float, float], ...], ...] = ()  # privacy polygons, normalised 0..1
    timestamp: bool = False  # burn the capture time into the picture (node/capture/filters.py)
    substream: tuple[int, int] | None = None  # a second, smaller encode for tiles and viewers that fall behind

    @property
    def max_bitrate_bps(self) -> int:
        return self.bitrate_bps or default_bitrate(self.width, self.height, self.fps)


@dataclass(frozen=True)
class NodeConfig:
    id: str
    store_url: str | None = None  # one store URL, or several separated by commas (shared/store_list.py)
    host: str = "0.0.0.0"
    port: int = 8000
    cameras: tuple[CameraConfig, ...] = field(default_factory=tuple)
    segment_seconds: float = 10.0
    spool_dir: str | None = None
    spool_max_bytes: int | None = None  # wins over spool_max_minutes
    spool_max_minutes: float = 30.0  # of all cameras at their bitrate cap

    @property
    def stores(self) -> tuple[str, ...]:
        """The stores to upload to, in the order to try them; () for none. ``StoreListError`` for a bad list."""
        return parse_store_list(self.store_url) if self.store_url else ()

    @property
    def spool_path(self) -> Path:
        return Path(self.spool_dir) if self.spool_dir else Path("sht-spool") / self.id

    @property
    def spool_limit_bytes(self) -> int:
        if self.spool_max_bytes is not None:
            return self.spool_max_bytes
        bits_per_s = sum(c.max_bitrate_bps for c in self.cameras)
        return int(self.spool_max_minutes * 60 * bits_per_s / 8)


NODE_KEYS = {"id", "store", "host", "port", "cameras", "segment_seconds", "spool", "spool_max_bytes",
             "spool_max_minutes"}
CAMERA_KEYS = {"id", "source", "width", "height", "fps", "keyframe_interval_s", "bitrate_bps", "motion",
               "codec", "encoder", "masks", "timestamp", "substream"}


def masks_from_reader(r: FieldReader) -> tuple[tuple[tuple[float, float], ...], ...]:
    """``masks``: [{"rect": [x, y, w, h]} | {"polygon": [[x, y], ...]}], all normalised to 0..1."""
    polygons: list[tuple[tuple[float, float], ...]] = []
    for m in r.children("masks", []):
        m.reject_unknown({"rect", "polygon"})
        if m.has("rect") == m.has("polygon"):
            raise m.error("rect", "give exactly one of rect or polygon")
        if m.has("rect"):
            x, y, w, h = m.numbers("rect", 4, minimum=0, maximum=1)
            polygons.append(((x, y), (x + w, y), (x + w, y + h), (x, y + h)))
            continue
        points = m.data["polygon"]
        if not isinstance(points, list) or len(points) < 3:
            raise m.error("polygon", f"must be an array of at least 3 [x, y] points, got {points!r}")
        p = FieldReader({str(i): v for i, v in enumerate(points)}, r.source, m.field_path("polygon"))
        polygons.append(tuple(p.pair(str(i), minimum=0, maximum=1) for i in range(len(points))))
    return tuple(polygons)


def substream_from_reader(r: FieldReader, width: int, height: int) -> tuple[int, int] | None:
    if not r.has("substream") or r.data["substream"] is None:
        return None
    try:
        size = parse_size(r.string("substream"), "substream")
    except ValueError as exc:
        raise r.error("substream", str(exc)) from None
    if size[0] >= width or size[1] >= height:
        raise r.error("substream", f"must be smaller than the camera's {width}x{height}, got {size[0]}x{size[1]}")
    return size


def camera_from_reader(r: FieldReader) -> CameraConfig:
    r.reject_unknown(CAMERA_KEYS)
    width = r.integer("width", 1280, minimum=16, maximum=7680)
    height = r.integer("height", 720, minimum=16, maximum=4320)
    if width % 2 or height % 2:
        raise r.error("width" if width % 2 else "height", "must be even (YUV 4:2:0)")
    return CameraConfig(
        id=r.ident("id"),
        source=r.string("source", "synthetic"),
        width=width,
        height=height,
        fps=r.integer("fps", 15, minimum=1, maximum=120),
        keyframe_interval_s=float(r.number("keyframe_interval_s", 1.0, minimum=0.1, maximum=60)),
        bitrate_bps=r.integer("bitrate_bps", minimum=50_000, maximum=100_000_000) if r.has("bitrate_bps") else None,
        motion=r.data.get("motion"),  # validated by the node, which knows the detectors
        codec=r.choice("codec", ("h264", "h265"), "h264"),
        encoder=r.string("encoder") if r.has("encoder") else None,
        masks=masks_from_reader(r),
        timestamp=r.boolean("timestamp", False),
        substream=substream_from_reader(r, width, height),
    )


def stores_from_reader(r: FieldReader) -> str | None:
    """``store``: one URL, URLs separated by commas, or a list of URLs (tried in order, failing over); as the
    comma-separated text ``--store`` takes."""
    if not r.has("store") or r.data["store"] in (None, ""):
        return None
    value = r.data["store"]
    if not isinstance(value, (str, list)):
        raise r.error("store", f"must be a URL, URLs separated by commas, or a list of URLs, got {value!r}")
    try:
        return joined(parse_store_list(value, "the list"))
    except StoreListError as exc:
        raise r.error("store", str(exc)) from None


def node_config_from_json(data: object, source: str) -> NodeConfig:
    r = FieldReader(data, source)
    r.reject_unknown(NODE_KEYS)
    cameras = tuple(camera_from_reader(c) for c in r.children("cameras", []))
    seen: set[str] = set()
    for i, cam in enumerate(cameras):
        if cam.id in seen:
            raise ConfigError(f"camera id {cam.id!r} is used twice", source=source,
                              field=f"cameras[{i}].id")
        seen.add(cam.id)
    store = stores_from_reader(r)
    return NodeConfig(
        id=r.ident("id"),
        store_url=store or None,
        host=r.string("host", "0.0.0.0"),
        port=r.integer("port", 8000, minimum=0, maximum=65535),
        cameras=cameras,
        segment_seconds=float(r.number("segment_seconds", 10.0, minimum=1, maximum=600)),
        spool_dir=r.string("spool", "") if r.has("spool") else None,
        spool_max_bytes=r.integer("spool_max_bytes", minimum=1) if r.has("spool_max_bytes") else None,
        spool_max_minutes=float(r.number("spool_max_minutes", 30.0, minimum=0.1)),
    )


def load_node_config(path: str | Path) -> NodeConfig:
    return node_config_from_json(load_json_file(path), str(path))


def parse_camera_flag(text: str) -> tuple[str, str]:
    """Parse ``--camera ID=SOURCE`` into (id, source)."""
    camera_id, sep, source = text.partition("=")
    if not sep or not source:
        raise ValueError(f"--camera {text!r} must look like ID=SOURCE, e.g. cam0=synthetic")
    return check_id(camera_id, "camera id"), source


def with_overrides(base: NodeConfig, **changes: Any) -> NodeConfig:
    """Apply command-line overrides (None means 'not given') on top of a config."""
    from dataclasses import replace

    given = {k: v for k, v in changes.items() if v is not None}
    return replace(base, **given)


