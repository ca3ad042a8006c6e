"""The store's end of /control for object detection: event labels go to nodes that understand them, and a node
too old for the objects recording mode is told motion instead (store/nodes/control_link.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets

from shared.protocol.control import EventLabel, Hello, SettingsPush, parse_control
from shared.settings import MOTION, OBJECTS_MODE, RECORDING_MODE
from store.index import settings
from store.index.db import Index
from store.nodes.control_link import ControlLinks
from store.nodes.fleet import Fleet


class FakeLink:
    """A node's connection as the store holds it: what was sent, and whether it has closed."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.closed = False

    async def send(self, message: str) -> None:
        if self.closed:
            raise websockets.ConnectionClosed(None, None)
        self.sent.append(parse_control(message))


@pytest.fixture
async def links(tmp_path) -> AsyncIterator[ControlLinks]:
    index = await Index.open(tmp_path / "index.sqlite3")
    try:
        yield ControlLinks(Fleet(index.conn, lambda: 0), index, frozenset, lambda revoked: None)
    finally:
        await index.close()


async def connect(links: ControlLinks, hello: Hello) -> FakeLink:
    """What ``serve`` does with a hello, short of a socket."""
    link = FakeLink()
    links.versions[hello.node] = hello.version
    await links.fleet.hello(hello, "10.0.0.5", link)
    return link


async def test_a_label_goes_to_the_node_of_the_event(links: ControlLinks) -> None:
    link = await connect(links, Hello("node0", 8000, ("cam0",)))
    assert await links.push_event_label("node0", "cam0", 1_700_000_000_000_000, "person")
    assert link.sent == [EventLabel("cam0", 1_700_000_000_000_000, "person")]
    assert json.loads(EventLabel("cam0", 1, "person").serialize())["type"] == "event_label"


async def test_the_verdict_none_found_goes_as_null(links: ControlLinks) -> None:
    link = await connect(links, Hello("node0", 8000, ("cam0",)))
    assert await links.push_event_label("node0", "cam0", 1_700_000_000_000_000, None)
    assert link.sent == [EventLabel("cam0", 1_700_000_000_000_000, None)]


async def test_no_label_for_a_node_that_is_gone_or_too_old(links: ControlLinks) -> None:
    assert not await links.push_event_label("node9", "cam9", 1, "person")  # never connected
    old = await connect(links, Hello("node1", 8000, ("cam1",), version=1))
    assert not await links.push_event_label("node1", "cam1", 1, "person") and old.sent == []
    closed = await connect(links, Hello("node2", 8000, ("cam2",)))
    closed.closed = True
    assert not await links.push_event_label("node2", "cam2", 1, "person")


async def test_a_node_too_old_for_objects_mode_is_told_motion(links: ControlLinks) -> None:
    await settings.set_setting(links.index.conn, "cam0", RECORDING_MODE, OBJECTS_MODE, "ops", 1)
    await settings.set_setting(links.index.conn, "cam1", RECORDING_MODE, OBJECTS_MODE, "ops", 1)
    new = await connect(links, Hello("node0", 8000, ("cam0",)))
    old = await connect(links, Hello("node1", 8000, ("cam1",), version=1))
    await links.push_settings("cam0")
    await links.push_settings("cam1")
    [pushed] = new.sent
    assert isinstance(pushed, SettingsPush) and pushed.settings.recording_mode == OBJECTS_MODE
    [pushed] = old.sent
    assert isinstance(pushed, SettingsPush) and pushed.settings.recording_mode == MOTION
    assert pushed.settings.objects == ("person",)  # the rest as stored (an old node skips what it does not know)
