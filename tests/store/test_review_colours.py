"""The Review page gives every event kind a node sends a colour of its own (store/web/review-day.js)."""

from __future__ import annotations

import re
from pathlib import Path

from shared.protocol.ingest import EVENT_KINDS

SCRIPT = Path(__file__).parents[2] / "store" / "web" / "review-day.js"


def test_every_event_kind_has_its_own_colour() -> None:
    found = re.search(r"const LABEL_COLOURS = \{(.*?)\};", SCRIPT.read_text(), re.S)
    assert found, "LABEL_COLOURS not found in review-day.js"
    colours = dict(re.findall(r'"?([\w-]+)"?:\s*"(#[0-9a-f]{6})"', found.group(1)))
    assert set(EVENT_KINDS) <= set(colours), f"no colour for {set(EVENT_KINDS) - set(colours)}"
    assert len(set(colours.values())) == len(colours), "two labels share a colour"
