"""The off-site copy: ``sht store --replica s3://BUCKET[/PREFIX]?endpoint=...`` copies every acknowledged segment
and event to a second object store, continuously; ``sht store restore --from ...`` builds a store from it.

Layout below the replica's prefix (docs/cluster.md, "Off-site copy"):

- ``replica.json``: what this is (``{"format": 1, ...}``), written at the first contact; restore looks for it;
- ``segments/CAMERA/YYYY-MM-DD/HH/<start_us>.mp4``: each segment under its index row's ``path``, PUT with the
  SHA-256 of its row (the server verifies it) and the row itself in the object's metadata (``x-amz-meta-sht-row``),
  so a restore gets the same row back without decoding the MP4;
- ``events/CAMERA/YYYY-MM-DD/<start_us>-<kind>.json``: each event's row (labels included), rewritten whenever it
  changes (open -> closed, labelled, locked);
- ``events/CAMERA/YYYY-MM-DD/<start_us>-<kind>-<frame_us>.jpg``: its snapshot, which the JSON names.

The replica keeps what it was given: segments and snapshots the store's retention deletes stay in the copy
(a lifecycle rule on the bucket ages them out).

Modules: ``records`` (keys and JSON, sans-I/O), ``cursor`` (which segment rows are copied), ``state`` (that, kept
in ROOT/replica/state.sqlite3), ``bucket`` (the S3 client), ``task`` (the copying inside the store),
``restore`` and ``cli`` (``sht store restore``).
"""

from __future__ import annotations

from dataclasses import dataclass

FORMAT = 1  # of replica.json and the event objects; restore refuses a newer one


@dataclass(frozen=True)
class ReplicaOptions:
    """How the store's copying paces itself. ``poll_s``: how often it looks for new rows when idle;
    ``full_scan_s``: how often every event is compared with what was copied (new, open and recent events are
    looked at on each poll); ``backoff_max_s``: the longest wait between tries while the replica fails;
    ``parallel``: PUTs in flight at once."""

    poll_s: float = 1.0
    full_scan_s: float = 60.0
    backoff_max_s: float = 30.0
    parallel: int = 4
