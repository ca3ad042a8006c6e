"""Moved to ``shared/adaptive.py`` (the relay switches its viewers too); re-exported for node imports."""

from shared.adaptive import AdaptivePolicy

__all__ = ["AdaptivePolicy"]
