"""Moved to ``shared/fanout.py`` (the store's relay fans out too); re-exported so node imports keep working."""

from shared.fanout import END_OF_STREAM, AccessUnit, FanOut, Subscription

__all__ = ["END_OF_STREAM", "AccessUnit", "FanOut", "Subscription"]
