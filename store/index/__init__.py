"""The SQLite index: schema, migrations, queries, timelines, settings."""

from pathlib import Path

INDEX_FILE = "index.sqlite3"  # ROOT/index.sqlite3: the one name every part of the store opens


def index_path(root: Path) -> Path:
    return root / INDEX_FILE
