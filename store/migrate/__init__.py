"""``sht store migrate``: move a store at rest from its embedded backends (``ROOT/index.sqlite3``, ``ROOT/segments``)
to the scale-out ones: a PostgreSQL index (``--to-index postgresql://...``), segments in an S3 bucket
(``--to-segments s3://...``), or both (docs/cluster.md, "Moving an existing store").

The source is only read: its index is opened read-only, its segment files are read, and ``ROOT/store.lock`` is held
so that no store starts on it meanwhile (a running one makes migrate refuse). Every segment goes under the same
name (``CAMERA/YYYY-MM-DD/HH/<start_us>.mp4``), its bytes checked against its row's SHA-256 first and PUT with
that SHA-256, which the server verifies; with ``--to-index`` its row is written only after that PUT returned. The
rows keep their ids, so an event's id (what the API and the console name it by) is the same on both.

Resumable: the target index gets a ``store_migration`` row naming the source when the copy begins, and the bucket a
``_sht/migration.json`` object; a target holding anything else is refused, and one holding this source's
unfinished migration is taken up where it stopped (rows already there are skipped, objects PUT again only when
their row is not). A store refuses to start on an index an unfinished migration is filling (its next run would
delete what that store recorded). Modules: ``source``, ``target`` (the markers and the refusals), ``segments`` (the
copy of the segments), ``records`` (what each table gets, ``TABLES``; every other table and the tokens),
``verify``, ``run`` (the steps in order) and ``cli``.
"""

from __future__ import annotations

FORMAT = 1  # of the bucket's marker
MARKER_TABLE = "store_migration"
BUCKET_MARKER = "_sht/migration.json"  # below the prefix; no camera id starts with "_", and listings skip "_sht/"
MIGRATED_FROM = "sht-migrated-from"  # x-amz-meta-sht-migrated-from on each segment object: the source's identity


class MigrateError(Exception):
    """Migrate cannot start or go on; the message says what is wrong and what to do, in one line."""


class MigrationUnfinished(OSError):
    """A store was started on an index that an unfinished migration is filling (``target.refuse_if_migrating``)."""
