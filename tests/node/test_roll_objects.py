"""The ``objects`` recording mode's gate (node/recording/roll.py ``require_label``): footage near labelled events
only, a grace period for the label, and motion mode whenever no label can come."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from node.recording.roll import RecordingGate

S = 1_000_000


def gate(**options: object) -> RecordingGate[str]:
    return RecordingGate(pre_roll_us=5 * S, post_roll_us=10 * S, detection_delay_us=2 * S, require_label=True,
                         label_grace_us=10 * S, **options)  # type: ignore[arg-type]


def segments(g: RecordingGate[str], count: int, length_s: int = 10) -> None:
    for i in range(count):
        g.hold(i * length_s * S, (i + 1) * length_s * S, f"seg{i}")


def test_a_labelled_event_keeps_its_footage_as_in_motion_mode() -> None:
    g = gate()
    segments(g, 6)  # 0-10 … 50-60 s
    g.event_started(32 * S)
    assert g.decide(now_us=33 * S) == ([], [])  # unlabelled and open: everything waits for the verdict
    g.event_labelled(32 * S, "person")
    keep, discard = g.decide(now_us=34 * S)
    assert keep == ["seg2", "seg3", "seg4", "seg5"] and discard == []  # pre-roll from 27 s
    g.event_finished(32 * S, 35 * S)
    assert g.decide(now_us=45 * S) == ([], ["seg0", "seg1"])


def test_an_event_without_a_label_loses_its_footage_after_the_grace_period() -> None:
    g = gate()
    segments(g, 5)  # 0-50 s
    g.event_started(22 * S)
    g.event_finished(22 * S, 25 * S)  # would want 17-35 s in motion mode
    assert g.decide(now_us=34 * S) == ([], ["seg0"])  # seg0 is quiet; the rest wait (grace to 35 s)
    keep, discard = g.decide(now_us=48 * S)
    assert keep == [] and discard == ["seg1", "seg2", "seg3"]  # no label by 35 s: quiet footage
    assert [h.item for h in g.held] == ["seg4"]  # 40-50 s: a coming event's pre-roll may still want it


def test_a_label_within_the_grace_period_keeps_the_footage() -> None:
    g = gate()
    segments(g, 5)
    g.event_finished(22 * S, 25 * S)
    assert g.decide(now_us=30 * S) == ([], ["seg0"])
    g.event_labelled(22 * S, "car")  # the store decided on the event's best frame, after it closed
    assert g.decide_spans(now_us=34 * S) == ([("seg1", (17 * S, 20 * S)), ("seg2", (20 * S, 30 * S))], [])
    assert g.decide_spans(now_us=47 * S) == ([("seg3", (30 * S, 35 * S))], [])  # no coming event wants 35-40 s


def test_with_the_store_out_of_reach_every_event_keeps_its_footage() -> None:
    g = gate(verdicts_expected=False)
    segments(g, 5)
    g.event_finished(22 * S, 25 * S)
    assert g.decide(now_us=60 * S) == (["seg1", "seg2", "seg3"], ["seg0", "seg4"])


def test_a_store_that_comes_back_cannot_take_footage_already_kept() -> None:
    g = gate(verdicts_expected=False)
    segments(g, 3)
    g.event_finished(12 * S, 13 * S)
    assert g.decide(now_us=24 * S)[0] == ["seg0", "seg1"]  # seg2 (20-30) is partly wanted: it waits
    g.verdicts_expected = True  # the link is back, the event has no label and its grace is over
    assert g.decide(now_us=40 * S) == ([], ["seg2"])


def test_a_partly_wanted_segment_waits_for_a_pending_events_label() -> None:
    g = gate()
    g.event_finished(0, 2 * S)
    g.event_labelled(0, "person")  # wants up to 12 s
    g.event_finished(18 * S, 19 * S)  # unlabelled yet: might want 13-29 s
    g.hold(10 * S, 20 * S, "seg1")
    assert g.decide_spans(now_us=25 * S) == ([], [])  # its label may still widen what to keep
    g.event_labelled(18 * S, "person")
    assert g.decide_spans(now_us=26 * S) == ([("seg1", (10 * S, 20 * S))], [])


def test_a_partly_wanted_segment_is_trimmed_once_the_pending_event_missed_its_label() -> None:
    g = gate()
    g.event_finished(0, 2 * S)
    g.event_labelled(0, "person")
    g.event_finished(18 * S, 19 * S)
    g.hold(10 * S, 20 * S, "seg1")
    assert g.decide_spans(now_us=30 * S) == ([("seg1", (10 * S, 12 * S))], [])  # grace over at 29 s


def test_at_a_stop_an_event_still_waiting_for_its_label_keeps_its_footage() -> None:
    g = gate()
    segments(g, 6)
    g.event_finished(12 * S, 13 * S)  # grace to 23 s
    g.event_finished(42 * S, 43 * S)  # grace to 53 s
    keep, discard = g.finish(now_us=50 * S)
    assert keep == ["seg3", "seg4", "seg5"] and discard == ["seg0", "seg1", "seg2"]
    g2 = gate()
    segments(g2, 2)
    g2.event_finished(12 * S, 13 * S)
    assert g2.finish() == (["seg0", "seg1"], [])  # without a time: nothing is lost


def test_old_labels_are_forgotten_with_their_events() -> None:
    g = gate()
    g.event_finished(0, 1 * S)
    g.event_labelled(0, "person")
    g.event_labelled(5 * S, "person")  # an event this gate never heard of
    g.decide(now_us=20 * 60 * S)
    assert g.labels == {} and g.events == []


# A timeline: events one after another as (gap before it, length) in seconds, when each got its label (0: never,
# 1: while open, 2: once closed), and when the gate decides.
timelines = st.tuples(
    st.lists(st.tuples(st.integers(1, 30), st.integers(0, 8)), max_size=5),
    st.lists(st.integers(0, 2), min_size=5, max_size=5),
    st.lists(st.integers(0, 140), min_size=1, max_size=8),
)
Timeline = tuple[list[tuple[int, int]], list[int], list[int]]


def spans(timeline: Timeline) -> list[tuple[int, int]]:
    starts, end = [], 0
    for gap, length in timeline[0]:
        starts.append((end + gap, end + gap + length))
        end += gap + length
    return starts


def replay(g: RecordingGate[str], timeline: Timeline) -> tuple[list[tuple[str, tuple[int, int]]], list[str]]:
    """All segments (10 s each, 0-120 s) held from the start, each event reported as it starts and ends (as the
    motion worker does), labelled then or never; decisions at the given times, then a stop: every segment's fate
    and kept span."""
    _, labelled, times = timeline
    for i in range(12):
        g.hold(i * 10 * S, (i + 1) * 10 * S, f"seg{i}")
    reports = sorted([(start, 0, i) for i, (start, _) in enumerate(spans(timeline))]
                     + [(end, 1, i) for i, (_, end) in enumerate(spans(timeline))])
    keep: list[tuple[str, tuple[int, int]]] = []
    discard: list[str] = []
    for now in sorted(times) + [150]:
        while reports and reports[0][0] <= now:
            _, ended, i = reports.pop(0)
            start, end = spans(timeline)[i]
            if ended:
                g.event_finished(start * S, end * S)
            else:
                g.event_started(start * S)
            if labelled[i] == 1 + ended:
                g.event_labelled(start * S, "person")
        k, d = g.decide_spans(now * S)
        keep += k
        discard += d
    k, d = g.finish_spans(150 * S)
    return keep + k, discard + d


def motion_gate() -> RecordingGate[str]:
    return RecordingGate(pre_roll_us=5 * S, post_roll_us=10 * S, detection_delay_us=2 * S)


@given(timelines)
def test_with_every_event_labelled_at_its_start_objects_mode_is_motion_mode(timeline: Timeline) -> None:
    everything = (timeline[0], [1] * 5, timeline[2])
    assert replay(gate(), everything) == replay(motion_gate(), everything)


@given(timelines)
def test_without_verdicts_objects_mode_is_motion_mode(timeline: Timeline) -> None:
    assert replay(gate(verdicts_expected=False), timeline) == replay(motion_gate(), timeline)


@given(timelines)
def test_objects_mode_keeps_what_labelled_events_want_and_never_more_than_motion_mode(timeline: Timeline) -> None:
    keep, discard = replay(gate(), timeline)
    assert sorted([item for item, _ in keep] + discard) == sorted(f"seg{i}" for i in range(12))  # each once
    kept = dict(keep)
    for (start, end), label in zip(spans(timeline), timeline[1], strict=False):
        lo, hi = (start - 5) * S, (end + 10) * S
        for n in range(12):
            s, e = n * 10 * S, (n + 1) * 10 * S
            if label and lo < e and s < hi:  # a labelled event wants this segment: kept, over its window
                assert f"seg{n}" in kept and kept[f"seg{n}"][0] <= max(lo, s) and kept[f"seg{n}"][1] >= min(hi, e)
    motion = dict(replay(motion_gate(), timeline)[0])
    for item, (lo, hi) in kept.items():
        assert item in motion and motion[item][0] <= lo and hi <= motion[item][1]
