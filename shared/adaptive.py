"""Which stream a ``?stream=auto`` viewer gets: main, or the smaller sub stream when it falls behind.

Pure bookkeeping from the viewer's backlog (access units queued for it, which
grow while its connection cannot take more). Down fast (a second behind), up
slowly (caught up on the sub stream for a while), so a viewer on a weak link
does not flap between the two. Used by the node (node/serve/server.py) and by the
relay (store/live/relay.py), which switches its viewers between its own main and
sub upstreams.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AdaptivePolicy:
    fps: float
    behind_s: float = 1.0  # switch to the sub stream once this far behind
    recover_s: float = 10.0  # back to main after this long caught up
    current: str = "main"
    _caught_up_since: float | None = None

    def observe(self, backlog_units: int, now_s: float, send_s: float = 0.0, skipped: int = 0) -> str | None:
        """The stream to switch to now, or None to stay.

        After each unit sent: ``backlog_units`` still queued for the viewer, ``send_s`` the send took (a viewer
        that stopped reading blocks it: the queue alone cannot show that, it overflows and restarts on a
        keyframe), ``skipped`` units it lost to such overflows since the last call.
        """
        behind_s = (backlog_units / self.fps if self.fps > 0 else 0.0) + send_s
        if self.current == "main":
            if behind_s >= self.behind_s or skipped > 0:
                self.current, self._caught_up_since = "sub", None
                return "sub"
            return None
        if backlog_units > 1 or skipped > 0 or (self.fps > 0 and send_s > 1 / self.fps):
            self._caught_up_since = None
        elif self._caught_up_since is None:
            self._caught_up_since = now_s
        elif now_s - self._caught_up_since >= self.recover_s:
            self.current, self._caught_up_since = "main", None
            return "main"
        return None
