"""The second line of every screen: the newest alert."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from console.alerts import Alert
from console.formatting import clock

LEVEL_STYLE = {"error": "bold red", "warning": "yellow", "info": "green"}
LEVEL_MARK = {"error": "✖", "warning": "▲", "info": "●"}


def alert_text(alert: Alert) -> Text:
    return Text.assemble((clock(alert.at_us) + " ", "dim"), (LEVEL_MARK[alert.level] + " ", LEVEL_STYLE[alert.level]),
                         alert.text)


class AlertLine(Static):
    def on_mount(self) -> None:
        self.watch(self.app, "alerts", self._alerts_changed)

    def _alerts_changed(self, alerts: tuple[Alert, ...]) -> None:
        if not alerts:
            self.update(Text("no alerts", style="dim"))
            self.set_class(False, "-error")
            return
        last = alerts[-1]
        self.update(alert_text(last))
        self.set_class(last.level == "error", "-error")
