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


def motion_gate() -> RecordingGate[str]:
    return RecordingGate(pre_roll_us=5 * S, post_roll_us=10 * S, detection_delay_us=2 * S)


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


def test_the_verdict_none_found_lets_a_closed_events_footage_go_like_quiet_footage() -> None:
    g = gate()
    segments(g, 5)  # 0-50 s
    g.event_started(22 * S)
    g.event_finished(22 * S, 25 * S)  # would want 17-35 s in motion mode
    assert g.decide(now_us=30 * S) == ([], ["seg0"])  # seg0 is quiet; the rest wait for the verdict
    assert g.event_labelled(22 * S, None)  # the store analysed it: none of the camera's objects
    keep, discard = g.decide(now_us=48 * S)
    assert keep == [] and discard == ["seg1", "seg2", "seg3"]
    assert [h.item for h in g.held] == ["seg4"]  # 40-50 s: a coming event's pre-roll may still want it
    assert g.kept_without_verdict == 0


def test_no_verdict_by_the_end_of_the_grace_keeps_the_footage_as_motion_mode_and_counts_it() -> None:
    g, motion = gate(), motion_gate()
    for each in (g, motion):
        segments(each, 5)
        each.event_started(22 * S)
        each.event_finished(22 * S, 25 * S)
    assert g.decide(now_us=34 * S) == ([], ["seg0"])  # grace to 35 s: the rest wait
    assert g.kept_without_verdict == 0
    assert g.decide_spans(now_us=48 * S) == ([("seg1", (17 * S, 20 * S)), ("seg2", (20 * S, 30 * S)),
                                              ("seg3", (30 * S, 35 * S))], [])  # silence: not a verdict
    assert motion.decide_spans(now_us=48 * S)[0] == g.decide_spans(now_us=48 * S)[0] + [
        ("seg1", (17 * S, 20 * S)), ("seg2", (20 * S, 30 * S)), ("seg3", (30 * S, 35 * S))]
    assert g.kept_without_verdict == 1  # once per event
    assert not g.event_labelled(22 * S, None)  # too late: its footage is being kept already
    assert g.decide(now_us=60 * S) == ([], ["seg4"]) and g.kept_without_verdict == 1


def test_a_verdict_none_found_on_an_open_event_is_not_taken() -> None:
    g = gate()
    segments(g, 3)
    g.event_started(12 * S)
    assert not g.event_labelled(12 * S, None)  # only a finished event can be analysed whole
    g.event_finished(12 * S, 13 * S)
    assert g.decide(now_us=20 * S) == ([], [])  # still waiting for its verdict
    assert g.event_labelled(12 * S, None)
    assert g.event_labelled(12 * S, "dog")  # a label is never undone, and wins over a none-found
    assert not g.event_labelled(12 * S, None)
    assert g.decide(now_us=40 * S) == (["seg0", "seg1", "seg2"], [])


def test_a_label_within_the_grace_period_keeps_the_footage() -> None:
    g = gate()
    segments(g, 5)
    g.event_finished(22 * S, 25 * S)
    assert g.decide(now_us=30 * S) == ([], ["seg0"])
    g.event_labelled(22 * S, "car")  # the store decided on the event's best frame, after it closed
    assert g.decide_spans(now_us=34 * S) == ([("seg1", (17 * S, 20 * S)), ("seg2", (20 * S, 30 * S))], [])
    assert g.decide_spans(now_us=47 * S) == ([("seg3", (30 * S, 35 * S))], [])  # no coming event wants 35-40 s


def test_with_the_store_out_of_reach_every_event_without_a_verdict_keeps_its_footage() -> None:
    g = gate(verdicts_expected=False)
    segments(g, 5)
    g.event_finished(22 * S, 25 * S)
    assert g.decide(now_us=28 * S) == (["seg1", "seg2"], ["seg0"])  # at once: no grace to wait for
    assert g.decide(now_us=60 * S) == (["seg3"], ["seg4"])
    assert g.kept_without_verdict == 1  # its grace ran out without one too


def test_a_verdict_given_before_the_store_went_out_of_reach_still_holds() -> None:
    g = gate()
    segments(g, 5)
    g.event_finished(22 * S, 25 * S)
    assert g.event_labelled(22 * S, None)
    g.verdicts_expected = False
    assert g.decide(now_us=60 * S) == ([], ["seg0", "seg1", "seg2", "seg3", "seg4"])


def test_a_store_that_comes_back_cannot_take_footage_already_kept() -> None:
    g = gate(verdicts_expected=False)
    segments(g, 3)
    g.event_finished(12 * S, 13 * S)
    assert g.decide(now_us=20 * S)[0] == ["seg0", "seg1"]  # seg2 (20-30) is partly wanted: it waits
    g.verdicts_expected = True  # the link is back within the grace, and with it the verdict: nothing found
    assert g.event_labelled(12 * S, None)
    assert g.decide(now_us=40 * S) == ([], ["seg2"])


def test_a_partly_wanted_segment_waits_for_a_pending_events_verdict() -> None:
    g = gate()
    g.event_finished(0, 2 * S)
    g.event_labelled(0, "person")  # wants up to 12 s
    g.event_finished(18 * S, 19 * S)  # no verdict yet: might want 13-29 s
    g.hold(10 * S, 20 * S, "seg1")
    assert g.decide_spans(now_us=25 * S) == ([], [])  # its verdict may still widen what to keep
    g.event_labelled(18 * S, "person")
    assert g.decide_spans(now_us=26 * S) == ([("seg1", (10 * S, 20 * S))], [])


def test_a_partly_wanted_segment_is_trimmed_once_the_pending_event_is_found_empty() -> None:
    g = gate()
    g.event_finished(0, 2 * S)
    g.event_labelled(0, "person")
    g.event_finished(18 * S, 19 * S)
    g.hold(10 * S, 20 * S, "seg1")
    assert g.decide_spans(now_us=25 * S) == ([], [])
    g.event_labelled(18 * S, None)
    assert g.decide_spans(now_us=27 * S) == ([("seg1", (10 * S, 12 * S))], [])  # no coming event wants 12-20


def test_a_partly_wanted_segment_is_kept_whole_once_the_pending_event_missed_its_verdict() -> None:
    g = gate()
    g.event_finished(0, 2 * S)
    g.event_labelled(0, "person")
    g.event_finished(18 * S, 19 * S)
    g.hold(10 * S, 20 * S, "seg1")
    assert g.decide_spans(now_us=30 * S) == ([("seg1", (10 * S, 20 * S))], [])  # grace over at 29 s


def test_at_a_stop_only_events_found_empty_lose_their_footage() -> None:
    g = gate()
    segments(g, 6)
    g.event_finished(2 * S, 3 * S)
    g.event_labelled(2 * S, None)  # found empty
    g.event_finished(22 * S, 23 * S)  # grace to 33 s: missed
    g.event_finished(52 * S, 53 * S)  # grace to 63 s: still waiting
    keep, discard = g.finish(now_us=55 * S)
    assert keep == ["seg1", "seg2", "seg3", "seg4", "seg5"] and discard == ["seg0"]
    assert g.kept_without_verdict == 1  # the missed one; the one still waiting was cut short by the stop
    g2 = gate()
    segments(g2, 2)
    g2.event_finished(12 * S, 13 * S)
    assert g2.finish() == (["seg0", "seg1"], [])  # without a time: nothing is lost


def test_events_of_motion_mode_are_not_counted_as_missing_a_verdict() -> None:
    g = motion_gate()
    segments(g, 2)
    g.event_finished(2 * S, 3 * S)
    g.require_label = True  # switched to objects mode after the event
    assert g.decide(now_us=60 * S) == (["seg0", "seg1"], []) and g.kept_without_verdict == 0


def test_old_verdicts_are_forgotten_with_their_events() -> None:
    g = gate()
    g.event_finished(0, 1 * S)
    g.event_labelled(0, "person")
    g.event_labelled(5 * S, "person")  # an event this gate never heard of
    g.event_finished(7 * S, 8 * S)  # one that misses its verdict
    g.event_finished(9 * S, 10 * S)
    g.event_labelled(9 * S, None)
    g.decide(now_us=60 * S)
    assert g.missed == {7 * S} and g.kept_without_verdict == 1
    g.hold(19 * 60 * S, 20 * 60 * S, "seg")  # as in use, segments were recorded meanwhile
    g.decide(now_us=20 * 60 * S)
    assert g.labels == {} and g.events == [] and g.missed == set() and g.awaiting == {}


# A timeline: events one after another as (gap before it, length) in seconds, the store's verdict on each
# (NONE: never, LABEL_OPEN: a label while open, LABEL_CLOSED: a label once closed, EMPTY: "none found" once closed,
# EMPTY_OPEN: "none found" while open, which is refused), and when the gate decides.
NONE, LABEL_OPEN, LABEL_CLOSED, EMPTY, EMPTY_OPEN = range(5)
timelines = st.tuples(
    st.lists(st.tuples(st.integers(1, 30), st.integers(0, 8)), max_size=5),
    st.lists(st.integers(NONE, EMPTY_OPEN), min_size=5, max_size=5),
    st.lists(st.integers(0, 140), min_size=1, max_size=8),
)
Timeline = tuple[list[tuple[int, int]], list[int], list[int]]
STOP = 150


def spans(timeline: Timeline) -> list[tuple[int, int]]:
    starts, end = [], 0
    for gap, length in timeline[0]:
        starts.append((end + gap, end + gap + length))
        end += gap + length
    return starts


def replay(g: RecordingGate[str], timeline: Timeline) -> tuple[list[tuple[str, tuple[int, int]]], list[str]]:
    """Segments of 10 s (0-120 s), each held once it has ended, and each event reported as it starts and ends
    (as the recorder and the motion worker do), its verdict given then or never; decisions at the given times,
    then a stop: every segment's fate and kept span, sorted."""
    _, verdicts, times = timeline
    recorded = 0
    reports = sorted([(start, 0, i) for i, (start, _) in enumerate(spans(timeline))]
                     + [(end, 1, i) for i, (_, end) in enumerate(spans(timeline))])
    keep: list[tuple[str, tuple[int, int]]] = []
    discard: list[str] = []
    for now in sorted(times) + [STOP]:
        while recorded < 12 and (recorded + 1) * 10 <= now:
            g.hold(recorded * 10 * S, (recorded + 1) * 10 * S, f"seg{recorded}")
            recorded += 1
        while reports and reports[0][0] <= now:
            _, ended, i = reports.pop(0)
            start, end = spans(timeline)[i]
            if ended:
                g.event_finished(start * S, end * S)
            else:
                g.event_started(start * S)
            verdict = {(LABEL_OPEN, 0): "person", (LABEL_CLOSED, 1): "person", (EMPTY, 1): None,
                       (EMPTY_OPEN, 0): None}.get((verdicts[i], ended), "no verdict")
            if verdict != "no verdict":
                taken = g.event_labelled(start * S, verdict)
                assert taken == (verdict is not None or verdicts[i] == EMPTY)
        k, d = g.decide_spans(now * S)
        keep += k
        discard += d
    k, d = g.finish_spans(STOP * S)
    return sorted(keep + k), sorted(discard + d)


def expected(timeline: Timeline, found_empty_counts: bool = True) -> tuple[list[tuple[str, tuple[int, int]]],
                                                                           list[str]]:
    """What to keep, by the rule alone: each segment that an event wants, over the hull of their rolled windows;
    every event reported by the stop wants footage, but one the store found empty once it had closed."""
    windows = [((start - 5) * S, (end + 10) * S if end <= STOP else 2**62)
               for (start, end), verdict in zip(spans(timeline), timeline[1], strict=False)
               if start <= STOP and not (found_empty_counts and verdict == EMPTY and end <= STOP)]
    keep, discard = [], []
    for n in range(12):
        s, e = n * 10 * S, (n + 1) * 10 * S
        hits = [(max(lo, s), min(hi, e)) for lo, hi in windows if lo < e and s < hi]
        if hits:
            keep.append((f"seg{n}", (min(lo for lo, _ in hits), max(hi for _, hi in hits))))
        else:
            discard.append(f"seg{n}")
    return sorted(keep), sorted(discard)


@given(timelines)
def test_motion_mode_keeps_what_the_rule_says(timeline: Timeline) -> None:
    assert replay(motion_gate(), timeline) == expected(timeline, found_empty_counts=False)


@given(timelines)
def test_objects_mode_keeps_what_the_rule_says(timeline: Timeline) -> None:
    assert replay(gate(), timeline) == expected(timeline)


@given(timelines, st.booleans())
def test_without_a_verdict_none_found_objects_mode_is_motion_mode(timeline: Timeline, reachable: bool) -> None:
    """No verdicts at all, labels only, a "none found" refused on an open event, the store out of reach: silence
    never costs footage."""
    events, verdicts, times = timeline
    without = (events, [NONE if v == EMPTY else v for v in verdicts], times)
    assert replay(gate(verdicts_expected=reachable), without) == replay(motion_gate(), without)


@given(timelines)
def test_each_event_without_a_verdict_is_counted_once_when_its_grace_runs_out(timeline: Timeline) -> None:
    g = gate()
    replay(g, timeline)
    closed_in_time = [verdict for (_, end), verdict in zip(spans(timeline), timeline[1], strict=False)
                      if end + 10 <= STOP]  # grace 10 s, the last look at the stop
    assert g.kept_without_verdict == sum(v in (NONE, EMPTY_OPEN) for v in closed_in_time)
