"""Opening a camera whose source is not there at node start: a Pi camera missing, busy or failing to start.

A loose ribbon cable at boot, or another process holding the camera, must not stop the node (systemd would
restart it in a loop and its healthy cameras would record nothing). ``open_source`` raising
``SourceUnavailable`` at start makes the camera ``stalled`` with the reason (``Camera.start``: /health,
/metrics, the console and a camera-stalled event, as a stall mid-run does), and a ``SourceOpener`` thread
opens it again with the capture thread's backoff (1 s doubling to 30 s) until it opens, the node stops, or the
open fails for another reason (a plain ``SourceError`` or anything else: the camera is down). A reason that
changes (busy, then missing) is reported once each. A config error (an unknown source, a bad size) is never
``SourceUnavailable``: it still stops the node with its message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from node.capture.thread import REOPEN_FIRST_S, REOPEN_MAX_S
from node.sources import Source, open_source
from node.sources.base import SourceUnavailable
from shared.backoff import Backoff
from shared.config import CameraConfig

log = logging.getLogger(__name__)


class SourceOpener(threading.Thread):
    """Opens ``config``'s source with backoff; exactly one of ``on_open`` (the open source, which the callee
    owns) or ``on_error`` is called, unless ``stop`` came first. ``on_why``: the reason it gives changed."""

    def __init__(self, config: CameraConfig, why: str, on_why: Callable[[str], None],
                 on_open: Callable[[Source], None], on_error: Callable[[BaseException], None],
                 backoff: Backoff | None = None) -> None:
        super().__init__(name=f"open-{config.id}", daemon=True)
        self.config, self.why = config, why
        self.on_why, self.on_open, self.on_error = on_why, on_open, on_error
        self._backoff = backoff or Backoff(REOPEN_FIRST_S, REOPEN_MAX_S)
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        while not self._stop_event.wait(self._backoff.next_delay()):
            try:
                source = open_source(self.config)
            except SourceUnavailable as exc:
                log.warning("camera %s: still not opened: %s", self.config.id, exc)
                if str(exc) != self.why:
                    self.why = str(exc)
                    self.on_why(self.why)
                continue
            except BaseException as exc:  # reported to the loop, which marks the camera down
                self.on_error(exc)
                return
            if self._stop_event.is_set():
                source.close()
                return
            self.on_open(source)
            return
