"""A clip export under way: where it goes, a progress bar, then how it ended."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar


class ExportProgress(Horizontal):
    def compose(self) -> ComposeResult:
        yield Label("", classes="export-label")
        yield ProgressBar(total=None, show_eta=False, classes="export-bar")

    def begin(self, text: str) -> None:
        self.add_class("-active")
        self.remove_class("-failed")
        self.query_one(".export-label", Label).update(text)
        self.query_one(ProgressBar).update(total=None, progress=0)

    def advance(self, done: int, total: int) -> None:
        self.query_one(ProgressBar).update(total=max(total, 1), progress=done)

    def finish(self, text: str) -> None:
        self.query_one(".export-label", Label).update(text)

    def fail(self, text: str) -> None:
        self.add_class("-failed")
        self.query_one(".export-label", Label).update(text)
