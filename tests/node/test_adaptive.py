from shared.adaptive import AdaptivePolicy


def test_a_viewer_falling_behind_drops_to_sub_and_returns_after_a_calm_while():
    p = AdaptivePolicy(fps=10, behind_s=1.0, recover_s=10.0)
    assert p.observe(3, 0.0) is None
    assert p.observe(10, 1.0) == "sub"  # a second behind
    assert p.observe(0, 2.0) is None  # caught up: the clock starts
    assert p.observe(5, 5.0) is None  # behind again: it restarts
    assert p.observe(1, 6.0) is None
    assert p.observe(0, 15.0) is None
    assert p.observe(0, 16.0) == "main" and p.current == "main"


def test_a_viewer_that_keeps_up_stays_on_main():
    p = AdaptivePolicy(fps=15)
    assert all(p.observe(backlog, t) is None for t, backlog in enumerate([0, 1, 2, 5, 14, 0]))


def test_a_viewer_that_stopped_reading_is_behind_by_its_blocked_send_or_its_lost_units():
    p = AdaptivePolicy(fps=10)
    assert p.observe(0, 0.0, send_s=0.05) is None
    assert p.observe(0, 1.0, send_s=1.5) == "sub"  # the send waited 1.5 s for the viewer to read
    p = AdaptivePolicy(fps=10)
    assert p.observe(0, 0.0, skipped=7) == "sub"  # its queue overflowed: it lost units, so it is behind
    assert p.observe(0, 1.0) is None
    assert p.observe(0, 5.0, send_s=0.5) is None  # still slow on sub: the calm period restarts
    assert p.observe(0, 6.0) is None
    assert p.observe(0, 15.9) is None
    assert p.observe(0, 16.0) == "main"
