"""Applying the runtime settings the store pushes (shared/protocol/control.py ``SettingsPush``) to a node.

Of the settings in shared/settings.py, the node acts on those whose spec says ``applied_by="node"``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from node.capture.master import Camera
from node.recording.modes import RecordingModes
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
        settings = push.settings
        values = settings.to_json()
        if camera.settings != values:
            log.info("camera %s settings now %s", push.camera, values)
        camera.settings = values  # as /health shows them
        self.recording.set_mode(camera.id, settings.recording_mode)
        if camera.motion is not None:
            camera.motion.set_sensitivity(settings.motion_sensitivity)
