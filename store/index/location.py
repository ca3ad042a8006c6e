"""Where the index is: ``sht store --index URL``.

``sqlite:PATH`` (the default, ``ROOT/index.sqlite3``: one file beside the segments, nothing to install) or
``postgresql://USER[:PASS]@HOST[:PORT]/DB`` (several stores share one index; needs the ``cluster`` extra).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from store.index import index_path

SQLITE = "sqlite:"
POSTGRES_SCHEMES = ("postgresql", "postgres")


def add_index_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", default=None, metavar="URL",
                   help="where the index is: sqlite:PATH (default ROOT/index.sqlite3) or "
                        "postgresql://USER[:PASS]@HOST[:PORT]/DB, one index several stores share (needs "
                        "pip install 'sht-cctv[cluster]'; docs/cluster.md)")


def index_from_args(args: argparse.Namespace) -> str | None:
    """The index ``--index`` names (None: the default ROOT/index.sqlite3); ValueError saying what is wrong."""
    text = getattr(args, "index", None)
    return check_index_url(text) if text else None


class IndexUnavailable(OSError):
    """The index's server cannot be reached (refused, timed out, bad password): one line for the operator."""


def redacted(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def describe(url: str | None, root: Path) -> str:
    """Where the index is, for logs: its file, or its URL without the password."""
    if url is None:
        return str(index_path(root))
    path = sqlite_path(url)
    return str(path) if path is not None else redacted(url)


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
