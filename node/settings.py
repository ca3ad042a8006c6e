"""Applying the runtime settings the store pushes (shared/protocol/control.py ``SettingsPush``) to a node."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from node.capture.master import Camera
from node.recording.modes import CONTINUOUS, RecordingModes
from shared.protocol.control import SettingsPush

log = logging.getLogger(__name__)


class SettingsApplier:
    def __init__(self, cameras: Mapping[str, Camera], recording: RecordingModes) -> None:
        self.cameras = cameras
        self.recording = recording

    def apply(self, push: SettingsPush) -> None:
        camera = self.cameras.get(push.camera)
        if camera is None:
            log.warning("store sent settings for %s, which is not on this node", push.camera)
            return
        if camera.settings != push.settings:
            log.info("camera %s settings now %s", push.camera, push.settings)
        camera.settings = dict(push.settings)  # as /health shows them
        mode = push.settings.get("recording_mode")
        self.recording.set_mode(camera.id, mode if isinstance(mode, str) else CONTINUOUS)
        sensitivity = push.settings.get("motion_sensitivity")
        if camera.motion is not None and isinstance(sensitivity, (int, float)):
            camera.motion.set_sensitivity(float(sensitivity))
