"""The detector's health: round trips, older stores, wrong types."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.protocol.detector_health import CameraDetection, DetectorHealth
from shared.protocol.errors import ProtocolError
from shared.protocol.fleet import FleetReport

counts = st.none() | st.integers(min_value=0, max_value=2**40)
texts = st.none() | st.text(max_size=20)
cameras = st.dictionaries(st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True),
                          st.builds(CameraDetection, st.none() | st.booleans(), counts, counts, counts, texts),
                          max_size=3)


@given(st.builds(DetectorHealth, texts, texts, texts, texts, texts, counts,
                 st.none() | st.floats(0, 1e4), st.none() | st.floats(0, 1e4), counts, counts, counts, counts,
                 counts, counts, counts, counts, counts, texts, cameras))
def test_round_trip(health: DetectorHealth) -> None:
    assert DetectorHealth.from_json(health.to_json()) == health


def test_missing_fields_read_as_none() -> None:
    assert DetectorHealth.from_json({}) == DetectorHealth()


def test_wrong_type_names_the_field() -> None:
    with pytest.raises(ProtocolError, match="frames"):
        DetectorHealth.from_json({"cameras": {"c0": {"frames": "many"}}})


def test_fleet_report_from_an_older_store_has_no_detector() -> None:
    report = FleetReport((), {}, 5)
    data = report.to_json()
    del data["detector"]
    assert FleetReport.from_json(data).detector is None
    with_detector = FleetReport((), {}, 5, DetectorHealth(mode="local", frames=3))
    assert FleetReport.from_json(with_detector.to_json()) == with_detector
