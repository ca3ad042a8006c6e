"""Recorded playback over HTTP: /recordings (one MP4 of a range, remuxed from segments) and /thumbs."""
