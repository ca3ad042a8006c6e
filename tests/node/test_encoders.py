"""Encoder selection: hardware probed by encoding one frame, failures of every kind ruled out, software last."""

from __future__ import annotations

import av
import numpy as np
import pytest

from node.capture import encoders
from node.capture.encoders import (
    CodecEncoder,
    EncoderError,
    Probe,
    choose_encoder,
    open_encoder,
    probe_all,
    try_encoder,
)
from node.recording.segmenter import Segmenter, build_segment
from node.sources.nal import HEVC_PPS, HEVC_SPS, HEVC_VPS, nal_type, nal_units
from node.sources.synthetic import SyntheticSource
from shared.config import CameraConfig
from shared.fanout import AccessUnit
from store.ingest.writer import mp4_problem


def recording(works: set[str], calls: list[str]):
    """A probe with injected results that records what was asked."""
    def probe(name: str) -> Probe:
        calls.append(name)
        return Probe(name, name in works, "" if name in works else "injected failure", 0.1)
    return probe


def test_first_working_hardware_encoder_wins():
    calls: list[str] = []
    assert choose_encoder("h264", tester=recording({"h264_nvenc", "libx264"}, calls)) == "h264_nvenc"
    assert calls == ["h264_v4l2m2m", "h264_vaapi", "h264_qsv", "h264_nvenc"]


def test_all_hardware_failing_falls_back_to_software():
    fake = lambda n: Probe(n, n in {"libx264", "libx265"}, "injected", 0)  # noqa: E731
    assert choose_encoder("h264", tester=fake) == "libx264"
    assert choose_encoder("h265", tester=fake) == "libx265"


def test_forced_encoder_must_work():
    fake = lambda n: Probe(n, n == "libx264", "no device", 0)  # noqa: E731
    assert choose_encoder("h264", forced="libx264", tester=fake) == "libx264"
    with pytest.raises(EncoderError, match="h264_nvenc.*does not work here: no device"):
        choose_encoder("h264", forced="h264_nvenc", tester=fake)


def test_nothing_works_says_so():
    with pytest.raises(EncoderError, match="no h264 encoder works"):
        choose_encoder("h264", tester=lambda n: Probe(n, False, "broken", 0))


@pytest.mark.parametrize("failure", [
    av.ArgumentError(22, "avcodec_open2 returned 22"), PermissionError(1, "Operation not permitted"),
    MemoryError(), RuntimeError("driver crashed"), ZeroDivisionError(),
])
def test_a_probe_survives_any_failure(monkeypatch, failure):
    def explode(*args, **kwargs):
        raise failure
    monkeypatch.setattr(encoders, "build_encoder", explode)
    verdict = try_encoder("h264_nvenc")
    assert not verdict.ok and type(failure).__name__ in verdict.detail


def test_an_encoder_that_opens_but_outputs_nothing_is_ruled_out(monkeypatch):
    class Silent:
        name = "silent"

        def encode(self, frame, capture_us):
            return []

        def flush(self):
            return []
    monkeypatch.setattr(encoders, "build_encoder", lambda *a, **k: Silent())
    verdict = try_encoder("h264_v4l2m2m")
    assert not verdict.ok and "no output" in verdict.detail


def test_real_probe_on_this_machine():
    """No GPU here: every hardware encoder fails honestly and libx264 is chosen."""
    results = {p.name: p for p in probe_all("h264")}
    assert results["libx264"].ok
    assert choose_encoder("h264") in results and results[choose_encoder("h264")].ok


def test_h265_segments_are_accepted_by_the_store():
    camera = CameraConfig(id="cam0", width=320, height=240, fps=10, codec="h265", encoder="libx265")
    encoder = open_encoder(camera)
    assert isinstance(encoder, CodecEncoder) and encoder.name == "libx265"
    source = SyntheticSource(320, 240, 10)
    segmenter = Segmenter("cam0", 1.0, 10)
    finished = None
    for i in range(25):
        for unit in encoder.encode(source.read(i), 1_000_000 + i * 100_000):
            if unit.keyframe:
                types = {nal_type("hevc", n) for n in nal_units(unit.data)}
                assert {HEVC_VPS, HEVC_SPS, HEVC_PPS} <= types
            finished = segmenter.push(AccessUnit.build(unit.capture_us, unit.keyframe, unit.data)) or finished
    assert finished is not None
    header, data = build_segment("node0", finished, 320, 240, 10, "hevc")
    assert header.codec == "hevc"
    assert mp4_problem(data, header) is None
    import io

    with av.open(io.BytesIO(data)) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == header.frames == 10
    luma = frames[0].to_ndarray(format="gray")
    assert luma.shape == (240, 320) and np.std(luma) > 5
