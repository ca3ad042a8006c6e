from node.recording.roll import UNHELD_SPAN_US, RecordingGate

S = 1_000_000


def gate() -> RecordingGate[str]:
    return RecordingGate(pre_roll_us=5 * S, post_roll_us=10 * S, detection_delay_us=2 * S)


def segments(g: RecordingGate[str], count: int, length_s: int = 10) -> None:
    for i in range(count):
        g.hold(i * length_s * S, (i + 1) * length_s * S, f"seg{i}")


def test_quiet_segments_are_discarded_once_no_event_can_want_them():
    g = gate()
    segments(g, 3)  # 0-10, 10-20, 20-30 s
    keep, discard = g.decide(now_us=30 * S)
    assert keep == [] and discard == ["seg0", "seg1"]  # seg2 could still get pre-roll from a coming event
    keep, discard = g.decide(now_us=37 * S)
    assert discard == ["seg2"] and not g.held


def test_event_keeps_its_segments_with_pre_and_post_roll():
    g = gate()
    segments(g, 6)  # 0-10 … 50-60 s
    g.event_started(32 * S)  # pre-roll from 27 s
    keep, discard = g.decide(now_us=33 * S)
    assert keep == ["seg2", "seg3", "seg4", "seg5"] and discard == []
    assert [h.item for h in g.held] == ["seg0", "seg1"]  # undecided while the event is open
    g.event_finished(32 * S, 35 * S)  # post-roll to 45 s
    keep, discard = g.decide(now_us=45 * S)
    assert keep == [] and discard == ["seg0", "seg1"]
    g.hold(60 * S, 70 * S, "seg6")
    keep, discard = g.decide(now_us=90 * S)
    assert discard == ["seg6"] and not g.events  # the old event is forgotten


def test_the_post_roll_reaches_into_the_segment_being_recorded_when_nothing_is_held():
    g = gate()
    g.hold(30 * S, 40 * S, "seg3")
    g.event_started(23 * S)
    g.event_finished(23 * S, 38 * S)  # post-roll to 48 s
    assert g.decide(now_us=41 * S) == (["seg3"], [])  # nothing held now, but 40-50 s is being recorded
    assert g.decide(now_us=48 * S) == ([], [])
    g.hold(40 * S, 50 * S, "seg4")
    assert g.decide_spans(now_us=60 * S) == ([("seg4", (40 * S, 48 * S))], [])


def test_pre_roll_reaches_back_into_an_earlier_segment():
    g = gate()
    segments(g, 2)  # 0-10, 10-20
    g.event_started(12 * S)  # pre-roll from 7 s: wants seg0 too
    keep, discard = g.decide(now_us=13 * S)
    assert keep == ["seg0", "seg1"] and discard == []


def test_post_roll_keeps_the_segment_after_the_event():
    g = gate()
    g.event_finished(5 * S, 8 * S)
    segments(g, 3)
    keep, discard = g.decide(now_us=60 * S)
    assert keep == ["seg0", "seg1"] and discard == ["seg2"]  # post-roll to 18 s


def test_release_all_keeps_undecided_footage():
    g = gate()
    segments(g, 2)
    assert g.release_all() == ["seg0", "seg1"] and not g.held


def test_finish_decides_everything_once_no_event_can_come():
    g = gate()
    g.event_finished(25 * S, 27 * S)
    segments(g, 5)  # 0-50 s; wanted: 20-30 (pre-roll from 20) to 37 (post-roll)
    keep, discard = g.finish()
    assert keep == ["seg2", "seg3"] and discard == ["seg0", "seg1", "seg4"] and not g.held


def test_a_partly_wanted_segment_waits_for_a_coming_events_pre_roll():
    g = gate()
    g.event_finished(0, 3 * S)  # wants up to 13 s (post-roll)
    g.hold(10 * S, 20 * S, "seg1")
    keep, discard = g.decide_spans(now_us=21 * S)
    assert keep == [] and discard == []  # 13-20 s is not wanted yet, but an event starting now would want 16 s on
    g.event_started(21 * S)
    keep, _ = g.decide_spans(now_us=22 * S)
    assert keep == [("seg1", (10 * S, 20 * S))]  # the new event's pre-roll (16 s) joins the old post-roll


def test_an_event_ending_after_the_next_began_does_not_close_the_next():
    g = gate()
    g.event_started(10 * S)
    g.event_started(20 * S)  # a second event opened before the first's end was heard
    g.event_finished(10 * S, 12 * S)
    assert g.open_since_us == 20 * S


# The edges, to the microsecond: a frame interval is 100 ms here (10 fps), capture stamps jitter by microseconds.
K = 1_796_533_578_207_639  # a segment boundary (from a failed system test run)


def test_a_segment_the_post_roll_reaches_into_by_microseconds_is_kept_trimmed_to_them():
    g = RecordingGate(pre_roll_us=5 * S, post_roll_us=4 * S, detection_delay_us=2 * S)
    g.event_started(K - 6 * S)
    g.event_finished(K - 6 * S, K - 4 * S + 13)  # post-roll to 13 µs past K
    g.hold(K - S, K, "before")
    assert g.decide_spans(now_us=K + 50_000) == ([("before", (K - S, K))], [])
    g.hold(K, K + S, "after")  # its first frame, captured at K, is within the post-roll
    assert g.decide_spans(now_us=K + S + 50_000) == ([], [])  # partly wanted: a coming event may want the rest
    assert g.events == [(K - 6 * S, K - 4 * S + 13)]  # not forgotten while a segment it wants is held
    assert g.decide_spans(now_us=K + 9 * S) == ([("after", (K, K + 13))], [])
    assert g.events == []


def test_a_post_roll_ending_in_the_gap_before_a_late_frame_wants_nothing_after_it():
    """The segment before ends one frame interval after its last frame; the next frame came 20 µs later than
    that, after the post-roll's end: no frame of the next segment is wanted."""
    g = RecordingGate(pre_roll_us=5 * S, post_roll_us=4 * S, detection_delay_us=2 * S)
    g.event_finished(K - 6 * S, K - 4 * S + 13)
    g.hold(K - S, K, "before")
    g.hold(K + 20, K + S, "after")
    keep, discard = g.decide_spans(now_us=K + 9 * S)
    assert keep == [("before", (K - S, K))] and discard == ["after"]


def test_a_segment_the_pre_roll_reaches_back_into_by_a_microsecond_is_kept():
    g = RecordingGate(pre_roll_us=5 * S, post_roll_us=4 * S, detection_delay_us=2 * S)
    g.hold(K - S, K, "before")
    g.event_started(K + 5 * S - 1)  # pre-roll from 1 µs before K
    assert g.decide_spans(now_us=K + 6 * S) == ([("before", (K - 1, K))], [])


def test_an_event_whose_post_roll_ended_before_motion_mode_began_keeps_the_segment_then_being_recorded():
    """Motion mode begins at 38 s, while the segment from 30 s is being recorded; an event had ended at 25 s, its
    post-roll (to 35 s) reaches into that segment. Nothing is held yet when the gate first decides, after 35 s:
    the event must not be forgotten then."""
    g = gate()
    g.event_started(20 * S)
    g.event_finished(20 * S, 25 * S)
    assert g.decide_spans(now_us=38 * S) == ([], [])
    assert g.decide_spans(now_us=39 * S) == ([], [])
    g.hold(30 * S, 40 * S, "seg3")
    assert g.decide_spans(now_us=48 * S) == ([("seg3", (30 * S, 35 * S))], [])


def test_with_no_segment_held_yet_events_are_forgotten_only_once_no_segment_can_reach_back_to_them():
    g = gate()
    g.event_finished(20 * S, 25 * S)  # wants up to 35 s
    g.decide_spans(now_us=35 * S + UNHELD_SPAN_US - 1)
    assert g.events == [(20 * S, 25 * S)]  # a segment being recorded may still begin before 35 s
    g.decide_spans(now_us=35 * S + UNHELD_SPAN_US)
    assert g.events == []  # none is that long: the memory stays bounded while no segment comes
