"""Which retained topics this store has put on the broker and not cleared, kept in ``ROOT/mqtt-retained.json``.

Retained messages outlive the store: a camera deleted (or a label dropped, or the prefix changed) while the store
was down still has its discovery configs and states on the broker. On every connect the bridge clears what is
listed here and no longer wanted (an empty retained payload), so Home Assistant removes those entities too.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from shared.fsutil import write_atomic

log = logging.getLogger(__name__)

RETAINED_FILE = "mqtt-retained.json"


class PublishedTopics:
    def __init__(self, root: Path) -> None:
        self.path = Path(root) / RETAINED_FILE
        self.topics: set[str] = set()

    async def load(self) -> None:
        self.topics = await asyncio.to_thread(_read, self.path)

    def stale(self, wanted: set[str]) -> list[str]:
        return sorted(self.topics - wanted)

    async def add(self, topics: set[str]) -> None:
        if not topics <= self.topics:
            self.topics |= topics
            await self._save()

    async def remove(self, topics: set[str]) -> None:
        if topics & self.topics:
            self.topics -= topics
            await self._save()

    async def _save(self) -> None:
        await asyncio.to_thread(write_atomic, self.path,
                                json.dumps({"retained": sorted(self.topics)}, indent=0).encode())


def _read(path: Path) -> set[str]:
    try:
        return {str(t) for t in json.loads(path.read_text())["retained"]}
    except FileNotFoundError:
        return set()
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("MQTT: ignoring %s (%s): retained topics from before are not cleared", path, exc)
        return set()
