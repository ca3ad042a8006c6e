"""Alert rules (store/notify/rules.py): notify modes, labels, zones, the cooldown, what goes to webhooks."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from shared.protocol.health import NamedZone
from shared.settings import CameraSettings
from store.notify.changes import EventChange, EventObject, zones_containing
from store.notify.rules import (
    MOTION_LABEL,
    AlertDesk,
    AlertMemory,
    AlertRule,
    WebhookFilter,
    alert_label,
    decide,
    for_webhooks,
    matching,
)

S = 1_000_000


def event(event_id: int = 1, camera: str = "cam0", label: str | None = None, labels: dict[str, int] | None = None,
          zones: tuple[str, ...] = (), kind: str = "motion", end_us: int | None = None) -> EventObject:
    if labels is None and label is not None:
        labels = {label: 1}
    return EventObject(event_id, camera, "node0", 1_000 * S, end_us, kind, label, 0.9, None, zones, None,
                       labels=labels)


def test_the_modes_and_filters_pick_the_label_an_event_alerts_for() -> None:
    objects = AlertRule()
    assert alert_label(event(), objects) is None, "objects mode waits for a label"
    assert alert_label(event(labels={}), objects) is None, "analysed, nothing found"
    assert alert_label(event(label="person"), objects) == "person"
    assert alert_label(event(label="person"), AlertRule(labels=("car",))) is None
    assert alert_label(event(label="person", labels={"person": 1, "car": 2}), AlertRule(labels=("car",))) == "car"
    assert alert_label(event(), AlertRule(notify="motion")) == MOTION_LABEL
    assert alert_label(event(label="person"), AlertRule(notify="off")) is None
    assert alert_label(event(kind="loss"), AlertRule(notify="motion")) is None, "a loss is never an alert"
    assert alert_label(event(label="person", zones=("yard",)), AlertRule(zones=("door",))) is None
    assert alert_label(event(label="person", zones=("yard", "door")), AlertRule(zones=("door",))) == "person"
    assert alert_label(event(label="person"), AlertRule(zones=("door",))) is None, "in no named zone"


def test_the_cooldown_is_per_camera_and_label_and_an_alert_stays_one() -> None:
    rule, memory = AlertRule(cooldown_s=60), AlertMemory()
    assert decide(event(1, label="person"), rule, memory, 0)
    assert decide(event(1, label="person", end_us=5 * S), rule, memory, 10 * S), "its end is still an alert"
    assert not decide(event(2, label="person"), rule, memory, 30 * S), "a second person within 60 s"
    assert decide(event(3, label="car"), rule, memory, 30 * S), "another label"
    assert decide(event(4, camera="cam1", label="person"), rule, memory, 30 * S), "another camera"
    assert decide(event(5, label="person"), rule, memory, 61 * S)
    assert not decide(event(6), rule, memory, 200 * S), "no label yet"
    assert decide(event(6, label="person"), rule, memory, 201 * S), "its label came: now an alert"


@given(st.lists(st.integers(0, 600), max_size=30), st.integers(0, 120))
def test_no_two_alerts_of_a_camera_and_label_come_within_the_cooldown(times_s: list[int], cooldown_s: int) -> None:
    rule, memory = AlertRule(cooldown_s=cooldown_s), AlertMemory()
    alerted: list[int] = []
    for n, at_s in enumerate(sorted(times_s)):
        if decide(event(n, label="person"), rule, memory, at_s * S):
            alerted.append(at_s)
        else:  # refused only within the cooldown of the last alert
            assert alerted and at_s - alerted[-1] < cooldown_s
    assert all(b - a >= cooldown_s for a, b in zip(alerted, alerted[1:], strict=False))


def change(kind: str, before: EventObject | None, after: EventObject) -> EventChange:
    return EventChange(kind, before, after)  # type: ignore[arg-type]


def test_webhooks_get_the_change_that_raised_the_alert_and_the_end() -> None:
    quiet, alert = event(), replace(event(label="person"), alert=True)
    assert not for_webhooks(change("new", None, quiet))
    assert for_webhooks(change("update", quiet, alert)), "the label made it an alert"
    assert not for_webhooks(change("update", alert, replace(alert, score=0.95))), "already sent"
    assert for_webhooks(change("end", alert, replace(alert, end_us=2_000 * S)))
    assert not for_webhooks(change("end", quiet, replace(quiet, end_us=2_000 * S)))
    assert for_webhooks(change("new", None, alert))
    pictured = replace(alert, snapshot="/snapshots/1.jpg")
    assert for_webhooks(change("update", alert, pictured)), "its first snapshot"
    assert not for_webhooks(change("update", pictured, replace(pictured, score=0.97))), "a better one: not again"
    assert not for_webhooks(change("update", quiet, replace(quiet, snapshot="/snapshots/1.jpg"))), "no alert"
    filters = [WebhookFilter(), WebhookFilter(cameras=("cam1",)), WebhookFilter(labels=("person",)),
               WebhookFilter(zones=("door",)), WebhookFilter(labels=("car",))]
    assert matching(change("new", None, alert), filters) == [0, 2]
    assert matching(change("new", None, replace(alert, zones=("door",))), filters) == [0, 2, 3]
    assert matching(change("new", None, quiet), filters) == []


async def test_the_desk_reads_each_cameras_settings_and_forgets_them_on_a_change() -> None:
    reads: list[str] = []
    current = {"cam0": CameraSettings({"notify": "motion"})}

    async def settings(camera: str) -> CameraSettings:
        reads.append(camera)
        return current.get(camera, CameraSettings())

    clock = iter(range(0, 10_000 * S, 100 * S))
    desk = AlertDesk(settings, clock=lambda: next(clock))
    assert await desk.decide(change("new", None, event(1)))
    assert not await desk.decide(change("new", None, event(2, camera="cam1")))
    assert await desk.decide(change("new", None, event(3)))  # 100 s later: past the cooldown
    assert reads == ["cam0", "cam1"], "cached"
    current["cam0"] = CameraSettings({"notify": "off"})
    desk.forget("cam0")
    assert not await desk.decide(change("new", None, event(4)))
    assert await desk.decide(change("end", None, event(3))), "an alert stays one"


def test_an_event_is_in_the_named_zones_its_boxs_bottom_centre_lies_in() -> None:
    door = NamedZone("door", ((0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0)))
    path = NamedZone("path", ((0.0, 0.7), (1.0, 0.7), (1.0, 0.9), (0.0, 0.9)))
    assert zones_containing((door, path), (0.6, 0.3, 0.2, 0.5)) == ("door", "path")  # feet at (0.7, 0.8)
    assert zones_containing((door, path), (0.6, 0.1, 0.2, 0.3)) == ()  # feet at (0.7, 0.4): above both
    assert zones_containing((door,), None) == () and zones_containing(None, (0.6, 0.3, 0.2, 0.5)) == ()
