"""A real node's /health and heartbeat keep their JSON key for key, in order, with each value's type.

The node builds its health as typed parts (shared/protocol/health.py) and turns
it into JSON only where it leaves: the /health route and the heartbeat. This
pins the wire form a node of the dict days sent (captured from one before the
change): three cameras (a frame source, one with a sub stream, a packet source
passed through) on a node without a store. Values such as fps differ run to
run; keys, their order and the type of every value do not. The SoC reading
varies by machine (vcgencmd, thermal zones, NVML), so only its keys are pinned
here; tests/shared/test_soc.py and tests/shared/test_typed_messages.py cover
its shapes.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

from node.app import Node
from shared.config import CameraConfig, NodeConfig
from shared.protocol.control import Heartbeat
from shared.protocol.health import NodeHealth
from tests.node.media import make_clip

CLOCK = {"offset_us": "int", "steps_forward": "int", "steps_back": "int"}
MOTION = {"detector": "str", "sensitivity": "float", "frames": "int", "dropped": "int", "events": "int",
          "active": "bool", "cpu_ms_per_frame": "float", "error": "None"}
RECORDING = {"segments_spooled": "int", "segments_failed": "int", "frames_skipped": "int", "journal_errors": "int",
             "held": "int", "discarded_quiet": "int", "trimmed_bytes": "int", "kept_without_verdict": "int"}


def camera_shape(sub_subscribers: str, substream: str, substream_frames: Any,
                 stream: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "state": "str", "error": "None", "source": "str", "width": "int", "height": "int",
        "configured_fps": "int", "fps": "float", "bitrate_bps": "int", "frames_encoded": "int",
        "frames_dropped": "int", "encoder": "str", "codec": "str", "encode_seconds": "float",
        "subscribers": "int", "sub_subscribers": sub_subscribers, "last_capture_us": "int", "settings": {},
        "motion": MOTION, "substream": substream, "substream_frames": substream_frames,
        **(stream or {}), "clock": CLOCK, "recording": RECORDING, "label_zones": "list", "zones": "list",
        "stalls": "int",
    }


SOC_KEYS = ["model", "temperature_c", "temperature_source", "throttled", "gpu_mem_mb", "clocks_hz", "gpus", "sources"]
EXPECTED = {
    "node": "str", "uptime_s": "float", "cpu_percent": "float", "process_cpu_percent": "float",
    "memory_percent": "float", "process_rss_bytes": "int", "temperature_c": "float or None",
    "soc": SOC_KEYS,
    "cameras": {
        "cam0": camera_shape("None", "None", "None"),
        "cam1": camera_shape("int", "str", {"from_source": "int", "scaled": "int"}),
        "cam2": camera_shape("None", "None", "None", {"mode": "str", "reconnects": "int", "source_error": "None",
                                                       "thread_cpu_s": "float", "keyframes_completed": "int"}),
    },
    "spool": {"segments": "int", "events": "int", "bytes": "int", "limit_bytes": "int", "oldest_start_us": "int",
              "oldest_age_s": "float", "lost_segments": "int", "lost_frames": "int", "lost_bytes": "int",
              "lost_by_camera": {}},
    "store": {"url": "None", "link": "str", "last_error": "None", "uploaded": "int", "refused": "int",
              "control": "str", "stores": "None", "control_url": "None", "failovers": "None", "resent": "int"},
}


def shape(value: Any) -> Any:
    """Keys (in order, as a dict keeps them) and each leaf's JSON type."""
    if isinstance(value, dict):
        return {key: shape(v) for key, v in value.items()}
    return "None" if value is None else type(value).__name__


def wire_shape(health: dict[str, Any]) -> dict[str, Any]:
    out = shape(health)
    out["soc"] = list(health["soc"])  # its values depend on the machine
    if out["temperature_c"] in ("float", "None"):
        out["temperature_c"] = "float or None"
    return out


def assert_same_shape(got: dict[str, Any]) -> None:
    """Equal as dicts and with the keys in the same order at every level."""
    assert got == EXPECTED
    assert json.dumps(got) == json.dumps(EXPECTED)


def ready(health: NodeHealth) -> bool:
    """Every camera has frames for its detector, the spool holds segments and the SoC has been read."""
    return (health.soc is not None and health.soc.state is None
            and all(c.motion is not None and c.motion.frames for c in health.cameras.values())
            and health.spool is not None and bool(health.spool.segments))


async def run_node(tmp_path: Path) -> tuple[dict[str, Any], NodeHealth, dict[str, Any]]:
    clip = make_clip(tmp_path / "clip.mp4", seconds=2)
    config = NodeConfig(id="node0", host="127.0.0.1", port=0, spool_dir=str(tmp_path / "spool"), segment_seconds=1.0,
                        cameras=(CameraConfig(id="cam0", width=160, height=90, fps=10),
                                 CameraConfig(id="cam1", width=320, height=180, fps=10, substream=(160, 90)),
                                 CameraConfig(id="cam2", source=f"file:{clip}?loop=1", width=320, height=240,
                                              fps=10)))
    node = Node(config)
    await node.start()
    try:
        for _ in range(200):  # 20 s at most
            if ready(node.health()):
                break
            await asyncio.sleep(0.1)

        def get() -> dict[str, Any]:
            with urllib.request.urlopen(f"http://127.0.0.1:{node.port}/health", timeout=5) as response:
                return json.loads(response.read())

        wire = await asyncio.to_thread(get)
        typed = node.health()
        heartbeat = json.loads(Heartbeat(typed).serialize())
    finally:
        await node.stop()
    return wire, typed, heartbeat


def test_health_and_heartbeat_keep_their_json(tmp_path: Path) -> None:
    wire, typed, heartbeat = asyncio.run(run_node(tmp_path))
    assert wire["soc"].get("state") is None, "the SoC reading should have arrived"
    assert_same_shape(wire_shape(wire))
    assert list(heartbeat) == ["type", "health"] and heartbeat["type"] == "heartbeat"
    assert_same_shape(wire_shape(heartbeat["health"]))
    # The node's own typed health is what goes out: reading the wire back gives the same JSON.
    assert NodeHealth.from_json(wire).to_json() == wire
    assert typed.cameras["cam2"].stream is not None and typed.cameras["cam0"].stream is None
    assert typed.cameras["cam1"].substream == "160x90" and typed.cameras["cam2"].state == "up"
