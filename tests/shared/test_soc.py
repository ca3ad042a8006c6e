"""SoC health through a faithful fake vcgencmd on PATH; absent sources read as None, nothing raises."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from shared import soc
from shared.protocol.health import GpuReading, SocReading, Throttled

FAKE_BIN = Path(__file__).parents[1] / "fakes" / "bin"


@pytest.fixture
def fake_pi(monkeypatch):
    monkeypatch.setenv("PATH", f"{FAKE_BIN}:/usr/bin:/bin")
    return monkeypatch


def test_pi4_reading(fake_pi, tmp_path):
    fake_pi.setenv("FAKE_VCGENCMD", "pi4")
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")
    r = soc.soc_reading(thermal_root=tmp_path, model_path=model)
    assert r.model == "Raspberry Pi 4 Model B Rev 1.4"
    assert (r.temperature_c, r.temperature_source) == (51.1, "vcgencmd")
    assert r.throttled == Throttled("0x0", (), ())
    assert r.gpu_mem_mb == 76
    assert r.clocks_hz == {"v3d": 500_000_000, "isp": 500_000_000, "h264": 0}
    assert r.sources is not None and r.sources["vcgencmd"] is True


def test_throttling_flags_are_decoded(fake_pi, tmp_path):
    fake_pi.setenv("FAKE_VCGENCMD", "throttled")
    r = soc.soc_reading(thermal_root=tmp_path)
    assert r.throttled == Throttled("0x50005", ("under-voltage", "throttled"), ("under-voltage", "throttled"))
    assert r.to_json()["throttled"] == {"raw": "0x50005", "now": ["under-voltage", "throttled"],
                                        "since_boot": ["under-voltage", "throttled"]}


def test_pi5_has_no_h264_clock(fake_pi, tmp_path):
    fake_pi.setenv("FAKE_VCGENCMD", "pi5")
    r = soc.soc_reading(thermal_root=tmp_path)
    assert r.clocks_hz is not None and r.clocks_hz["h264"] == 0 and r.gpu_mem_mb == 4


def test_broken_vcgencmd_falls_back_to_thermal_zones(fake_pi, tmp_path):
    fake_pi.setenv("FAKE_VCGENCMD", "broken")  # VCHI initialization failed, exit 255
    zone = tmp_path / "thermal_zone0"
    zone.mkdir()
    (zone / "temp").write_text("47250\n")
    r = soc.soc_reading(thermal_root=tmp_path, model_path=tmp_path / "none")
    assert (r.temperature_c, r.temperature_source) == (47.25, "thermal_zone")
    assert r.throttled is None and r.clocks_hz is None and r.model is None
    assert r.sources == {"vcgencmd": False, "thermal_zone": True, "nvml": False}


def test_nothing_available_is_all_none(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no vcgencmd at all
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails as if not installed
    r = soc.soc_reading(thermal_root=tmp_path, model_path=tmp_path / "none")
    assert r.temperature_c is None and r.temperature_source is None
    assert isinstance(r.gpus, str) and r.gpus.startswith("not available")


def test_nvml_failures_are_not_available(monkeypatch):
    class Broken:
        def nvmlInit(self):
            raise RuntimeError("NVML Shared Library Not Found")
    monkeypatch.setitem(sys.modules, "pynvml", Broken())
    assert soc.nvml_reading() == "not available (NVML Shared Library Not Found)"


def test_nvml_gpus_are_typed_and_keep_their_json(monkeypatch, tmp_path):
    class OneGpu:
        def nvmlInit(self): pass
        def nvmlShutdown(self): pass
        def nvmlDeviceGetCount(self): return 1
        def nvmlDeviceGetHandleByIndex(self, i): return i
        def nvmlDeviceGetName(self, h): return b"NVIDIA H100"
        def nvmlDeviceGetTemperature(self, h, sensor): return 41
        def nvmlDeviceGetUtilizationRates(self, h): return type("Rates", (), {"gpu": 7})()
        def nvmlDeviceGetEncoderUtilization(self, h): raise RuntimeError("not supported")
        def nvmlDeviceGetMemoryInfo(self, h): return type("Memory", (), {"used": 3 * 2**20})()
    monkeypatch.setitem(sys.modules, "pynvml", OneGpu())
    monkeypatch.setenv("PATH", str(tmp_path))  # no vcgencmd
    r = soc.soc_reading(thermal_root=tmp_path, model_path=tmp_path / "none")
    assert r.gpus == (GpuReading(0, "NVIDIA H100", 41, 7, None, 3),)
    assert r.sources == {"vcgencmd": False, "thermal_zone": False, "nvml": True}
    assert r.to_json()["gpus"] == [{"index": 0, "name": "NVIDIA H100", "temperature_c": 41,
                                    "utilization_percent": 7, "encoder_percent": None, "memory_used_mb": 3}]


def test_monitor_never_raises_and_caches(monkeypatch):
    calls = []

    def explode():
        calls.append(1)
        raise OSError("weird")
    monkeypatch.setattr(soc, "soc_reading", explode)
    monitor = soc.SocMonitor(ttl_s=60)
    failed = SocReading(error="OSError: weird")
    assert monitor.reading() in (SocReading(state="reading…"), failed)  # at once; a thread reads
    deadline = time.monotonic() + 5
    while monitor.reading() != failed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert monitor.reading() == failed and len(calls) == 1
    assert monitor.reading().to_json() == {"error": "OSError: weird"}


@pytest.mark.parametrize("text,expected", [("temp=48.3'C", 48.3), ("garbage", None)])
def test_parsers(text, expected):
    assert soc.parse_temp(text) == expected
    assert soc.parse_mem_mb("gpu=1G") == 1024 and soc.parse_clock("frequency(28)=0") == 0
