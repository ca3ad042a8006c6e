"""The store's object detector on the Fleet screen: where it runs, on what, how fast, and whether it keeps up."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from console.fleet_model import DETECTOR_TROUBLE_STATES, detector_troubled
from shared.protocol.detector_health import DetectorHealth

STATE_STYLE = {"running": "green", "starting": "yellow", "off": "dim"}
WHERE = {"local": "local", "off": "off"}  # local: in the store process (sht store --detect local)


def _where(d: DetectorHealth) -> str:
    if d.mode == "workers":
        n = d.workers or 0
        return f"{n} worker{'s' if n != 1 else ''}"
    return WHERE.get(d.mode or "", d.mode or "?")


def _device(d: DetectorHealth) -> str:
    """``cpu``, or ``cuda (Tensorrt)`` where the execution provider says more than the device does."""
    provider = (d.provider or "").removesuffix("ExecutionProvider")
    device = d.device or provider or "?"
    return f"{device} ({provider})" if provider and provider.lower() != device.lower() else device


def detector_text(d: DetectorHealth) -> Text:
    """``detector local · running · cpu · 8.9 ms (p99 14) · queue 0/8 · 3 dropped``: one line that fits 80
    columns; a second for errors, restarts and the last error when there are any."""
    text = Text.assemble(("detector ", "bold"), _where(d))
    if d.mode == "off":
        return text.append(" · events keep their motion meaning", style="dim")
    if d.state:
        text.append(" · ").append(d.state, style="bold red" if d.state in DETECTOR_TROUBLE_STATES
                                  else STATE_STYLE.get(d.state, ""))
    parts = [_device(d)]
    if d.inference_ms_p50 is not None:
        p99 = f" (p99 {d.inference_ms_p99:.0f})" if d.inference_ms_p99 is not None else ""
        parts.append(f"{d.inference_ms_p50:.1f} ms{p99}")
    if d.queue is not None:
        parts.append(f"queue {d.queue}" + (f"/{d.queue_limit}" if d.queue_limit is not None else ""))
    if d.dropped is not None:
        parts.append(f"{d.dropped} dropped")
    text.append("".join(f" · {p}" for p in parts))
    troubles = [f"{count} {word}{'s' if count != 1 else ''}"
                for count, word in ((d.errors, "error"), (d.restarts, "restart")) if count]
    if troubles or d.last_error:
        text.append("\n").append(" · ".join(troubles), style="yellow")
        if d.last_error:
            text.append(" · " if troubles else "").append("last error: ", style="bold red")
            text.append(d.last_error, style="red")
    return text


class DetectorLine(Static):
    """Hidden for a store that reports no detector; ``-troubled`` (red border) when it failed or errs."""

    def show(self, detector: DetectorHealth | None) -> None:
        self.display = detector is not None
        if detector is None:
            return
        self.update(detector_text(detector))
        self.set_class(detector_troubled(detector), "-troubled")
