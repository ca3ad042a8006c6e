"""Where the index is: ``sht store --index URL``.

``sqlite:PATH`` (the default, ``ROOT/index.sqlite3``: one file beside the segments, nothing to install) or
``postgresql://USER[:PASS]@HOST[:PORT]/DB`` (several stores share one index; needs the ``cluster`` extra).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from store.index import index_path

SQLITE = "sqlite:"
POSTGRES_SCHEMES = ("postgresql", "postgres")


def default_index_url(root: Path) -> str:
    return f"{SQLITE}{index_path(root)}"


def is_postgres(url: str) -> bool:
    return urlsplit(url).scheme in POSTGRES_SCHEMES


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:`` URL; None for any other."""
    return Path(url[len(SQLITE):]) if url.startswith(SQLITE) else None


def check_index_url(url: str) -> str:
    """The URL if it names an index this store can open; ValueError saying what is wrong otherwise."""
    if url.startswith(SQLITE):
        if not url[len(SQLITE):].strip():
            raise ValueError("--index sqlite: needs a file, e.g. sqlite:/srv/cctv/index.sqlite3")
        return url
    if not is_postgres(url):
        raise ValueError(f"--index {url!r}: give sqlite:PATH or postgresql://USER[:PASS]@HOST[:PORT]/DB")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ValueError(f"--index: the port in {parts.netloc.rsplit('@', 1)[-1]!r} is not a number") from None
    if not parts.hostname:
        raise ValueError("--index postgresql://...: name the server, e.g. postgresql://sht@db.lan/cctv")
    if not parts.path.strip("/"):
        raise ValueError("--index postgresql://...: name the database after the host, e.g. "
                         "postgresql://sht@db.lan:5432/cctv")
    return url
