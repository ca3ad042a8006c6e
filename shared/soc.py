"""The SoC and GPU under a node: temperature, throttling, GPU memory, clocks. Never raises.

On a Raspberry Pi the firmware knows best, through ``vcgencmd``: temperature,
the throttling flags (under-voltage, frequency capping, thermal throttling,
now and since boot), the GPU's memory split and the clocks of the 3D block
(v3d), the ISP and the H.264 block. Elsewhere: the hottest
``/sys/class/thermal`` zone and, where ``pynvml`` is installed and a driver
answers, NVIDIA's NVML. Whatever cannot be read is ``None`` (or "not
available" for a whole source), with the reason kept in ``sources``.

vcgencmd runs as a subprocess (~5-20 ms per call on a Pi), so a reading is
cached for ``CACHE_S`` seconds: ``/health`` polled every second does not fork
seven processes each time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from shared.health import THERMAL_ROOT, soc_temperature_c
from shared.protocol.health import GpuReading, SocReading, Throttled

CACHE_S = 10.0
CALL_TIMEOUT_S = 2.0
CLOCKS = ("v3d", "isp", "h264")
MODEL_PATH = Path("/proc/device-tree/model")
THROTTLE_BITS = {
    0: "under-voltage",
    1: "arm frequency capped",
    2: "throttled",
    3: "soft temperature limit",
}
NOT_AVAILABLE = "not available"


def parse_temp(text: str) -> float | None:
    """``temp=48.3'C`` → 48.3"""
    m = re.search(r"temp=([-\d.]+)", text)
    return float(m.group(1)) if m else None


def parse_throttled(text: str) -> Throttled | None:
    """``throttled=0x50005`` → the flags set now (bits 0-3) and since boot (bits 16-19)."""
    m = re.search(r"throttled=(0x[0-9a-fA-F]+)", text)
    if not m:
        return None
    value = int(m.group(1), 16)
    return Throttled(
        raw=m.group(1),
        now=tuple(name for bit, name in THROTTLE_BITS.items() if value >> bit & 1),
        since_boot=tuple(name for bit, name in THROTTLE_BITS.items() if value >> (bit + 16) & 1),
    )


def parse_mem_mb(text: str) -> int | None:
    """``gpu=76M`` → 76 (``G`` suffixes too)."""
    m = re.search(r"=(\d+)([MG])", text)
    if not m:
        return None
    return int(m.group(1)) * (1024 if m.group(2) == "G" else 1)


def parse_clock(text: str) -> int | None:
    """``frequency(46)=500000000`` → 500000000 (Hz; 0 means the block is clock-gated, i.e. idle or absent)."""
    m = re.search(r"frequency\(\d+\)=(\d+)", text)
    return int(m.group(1)) if m else None


def run_vcgencmd(*args: str, exe: str | None = None) -> str | None:
    """One vcgencmd call's output, or None if it is absent, fails or hangs."""
    exe = exe or shutil.which("vcgencmd")
    if not exe:
        return None
    try:
        done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=CALL_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def vcgencmd_reading(exe: str | None = None) -> SocReading | None:
    """Everything vcgencmd tells (temperature, throttling, GPU memory, clocks), or None when there is no
    working vcgencmd; ``soc_reading`` fills in the rest."""
    exe = exe or shutil.which("vcgencmd")
    temp = run_vcgencmd("measure_temp", exe=exe)
    if temp is None:
        return None

    def read(parser: Any, *args: str) -> Any:
        out = run_vcgencmd(*args, exe=exe)
        return parser(out) if out is not None else None

    return SocReading(
        temperature_c=parse_temp(temp),
        throttled=read(parse_throttled, "get_throttled"),
        gpu_mem_mb=read(parse_mem_mb, "get_mem", "gpu"),
        clocks_hz={name: read(parse_clock, "measure_clock", name) for name in CLOCKS},
    )


def nvml_reading() -> tuple[GpuReading, ...] | str:
    """Per-GPU readings from NVML, or why there are none. pynvml is optional and imported only here."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return f"{NOT_AVAILABLE} (pynvml is not installed)"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - no driver, no device, a library mismatch: all mean "none"
        return f"{NOT_AVAILABLE} ({exc})"
    gpus: list[GpuReading] = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            gpu: dict[str, Any] = {}
            for key, call in (
                ("name", lambda h=handle: pynvml.nvmlDeviceGetName(h)),
                ("temperature_c", lambda h=handle: pynvml.nvmlDeviceGetTemperature(h, 0)),  # 0: the GPU die
                ("utilization_percent", lambda h=handle: pynvml.nvmlDeviceGetUtilizationRates(h).gpu),
                ("encoder_percent", lambda h=handle: pynvml.nvmlDeviceGetEncoderUtilization(h)[0]),
                ("memory_used_mb", lambda h=handle: pynvml.nvmlDeviceGetMemoryInfo(h).used // 2**20),
            ):
                try:
                    value = call()
                    gpu[key] = value.decode() if isinstance(value, bytes) else value
                except Exception:  # noqa: BLE001 - one unsupported query must not hide the others
                    gpu[key] = None
            gpus.append(GpuReading(index=i, **gpu))
    except Exception as exc:  # noqa: BLE001
        return f"{NOT_AVAILABLE} ({exc})"
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
    return tuple(gpus)


def board_model(path: Path = MODEL_PATH) -> str | None:
    try:
        return path.read_text(errors="replace").strip("\x00\n ") or None
    except OSError:
        return None


def soc_reading(thermal_root: Path = THERMAL_ROOT, model_path: Path = MODEL_PATH) -> SocReading:
    """One full reading. Every field is always sent; unreadable ones are None."""
    vc = vcgencmd_reading()
    thermal = soc_temperature_c(thermal_root)
    nvml = nvml_reading()
    temperature, temp_source = ((vc.temperature_c, "vcgencmd") if vc and vc.temperature_c is not None
                                else (thermal, "thermal_zone") if thermal is not None else (None, None))
    return SocReading(
        model=board_model(model_path),
        temperature_c=temperature,
        temperature_source=temp_source,
        throttled=vc.throttled if vc else None,
        gpu_mem_mb=vc.gpu_mem_mb if vc else None,
        clocks_hz=vc.clocks_hz if vc else None,
        gpus=nvml,
        sources={
            "vcgencmd": vc is not None,
            "thermal_zone": thermal is not None,
            "nvml": isinstance(nvml, tuple),
        },
    )


class SocMonitor:
    """A cached ``soc_reading`` for /health; a failure inside becomes an ``error`` field, never an exception."""

    def __init__(self, ttl_s: float = CACHE_S) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._at = -1e18
        self._value = SocReading(state="reading…")
        self._refreshing = False

    def reading(self) -> SocReading:
        """The latest reading at once; a stale one is refreshed on a background thread, because vcgencmd
        can take seconds and /health and heartbeats are answered on the event loop."""
        with self._lock:
            stale = time.monotonic() - self._at >= self.ttl_s and not self._refreshing
            if stale:
                self._refreshing = True
        if stale:
            threading.Thread(target=self._refresh, name="soc-reading", daemon=True).start()
        return self._value

    def _refresh(self) -> None:
        try:
            value = soc_reading()
        except Exception as exc:  # noqa: BLE001 - health must answer whatever the machine does
            value = SocReading(error=f"{type(exc).__name__}: {exc}")
        with self._lock:
            self._value, self._at, self._refreshing = value, time.monotonic(), False
