"""Capture: pace a source, filter, encode once, fan out (CameraMaster)."""
