"""``/live/{camera}?format=fmp4`` (node and relay): the live stream as fragmented MP4 for a browser.

Per camera, one ``Fmp4Stream`` turns each access unit into one fragment at
most once: fragments depend only on the unit and the stream's base time, so
every fMP4 viewer of a camera is sent the same ``bytes`` object, as with the
plain framing. Messages: the JSON ``init`` (with ``format`` and the MSE
``mime`` type, codec string from the SPS), one binary init segment, then one
binary fragment per access unit; ``status`` text messages as on the plain stream.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection

from shared.fanout import AccessUnit, Subscription
from shared.protocol import fmp4
from shared.protocol.live import LiveInit

CACHE_UNITS = 128  # > any viewer's backlog (fps * 2 + 1 at up to 60 fps)


class Fmp4Stream:
    def __init__(self, init: LiveInit) -> None:
        self.init = init
        self.duration = max(1, round(fmp4.TIMESCALE / init.fps)) if init.fps > 0 else 3000
        self.base_us: int | None = None
        self._fragments: OrderedDict[int, bytes] = OrderedDict()
        self._header: tuple[tuple[bytes, bytes], str, bytes] | None = None
        self.fragments_built = 0

    def header(self, keyframe: AccessUnit) -> tuple[str, bytes]:
        """The JSON init and the init segment, from a keyframe's parameter sets."""
        params = fmp4.parameter_sets(fmp4.nal_units(keyframe.data))
        if params is None:
            raise ValueError("keyframe without SPS and PPS; cannot describe the stream")
        if self._header is None or self._header[0] != params:
            sps, pps = params
            i = self.init
            mime = f'video/mp4; codecs="{fmp4.codec_string(sps)}"'
            text = json.dumps({"type": "init", "camera": i.camera, "codec": i.codec, "width": i.width,
                               "height": i.height, "fps": i.fps, "format": "fmp4", "mime": mime})
            self._header = (params, text, fmp4.init_segment(i.width, i.height, sps, pps))
        return self._header[1], self._header[2]

    def fragment(self, unit: AccessUnit) -> bytes:
        cached = self._fragments.get(unit.capture_us)
        if cached is not None:
            return cached
        if self.base_us is None:
            self.base_us = unit.capture_us
        ticks = max(0, unit.capture_us - self.base_us) * fmp4.TIMESCALE // 1_000_000
        data = fmp4.fragment(ticks // self.duration + 1, ticks, self.duration, unit.keyframe,
                             fmp4.media_nals(fmp4.nal_units(unit.data)))
        self.fragments_built += 1
        self._fragments[unit.capture_us] = data
        if len(self._fragments) > CACHE_UNITS:
            self._fragments.popitem(last=False)
        return data


async def send_fmp4(connection: ServerConnection, sub: Subscription, stream: Fmp4Stream) -> None:
    """Until the subscription ends: init, init segment, then a fragment per unit (the first is a keyframe)."""
    unit = await sub.get()
    if unit is None:
        return
    text, segment = stream.header(unit)
    await connection.send(text)
    await connection.send(segment)
    while unit is not None:
        await connection.send(stream.fragment(unit))
        unit = await sub.get()


LIVE_PREFIX = "/live/"
FORMATS = ("h264", "fmp4")


def live_target(request_path: str, cameras: Iterable[str] | None = None) -> tuple[str, bool]:
    """``/live/CAM?format=fmp4`` → (camera, fmp4?).

    Raises ``LookupError`` for a camera not in ``cameras``, ``ValueError`` for an unknown format.
    """
    parts = urlsplit(request_path)
    camera = parts.path[len(LIVE_PREFIX):]
    fmt = parse_qs(parts.query).get("format", ["h264"])[0]
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use {' or '.join(FORMATS)}")
    if cameras is not None:
        known = sorted(cameras)
        if camera not in known:
            raise LookupError(f"no camera {camera!r} (cameras: {', '.join(known) or 'none'})")
    return camera, fmt == "fmp4"
