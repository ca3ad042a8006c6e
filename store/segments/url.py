"""``sht store --segments URL``: where segments are stored, parsed without touching anything (sans-I/O).

- ``file:DIR``: a directory (the default is ``ROOT/segments``);
- ``s3://BUCKET[/PREFIX][?endpoint=http://HOST:PORT][&region=R]``: a bucket of an S3-compatible object store
  (AWS S3 when no endpoint is given); credentials come from the standard AWS variables, never from the URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

DEFAULT_REGION = "us-east-1"
# S3's bucket naming rules (the common subset every S3-compatible store accepts).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_PART = re.compile(r"[A-Za-z0-9._-]+")
_FORMS = "file:DIR or s3://BUCKET[/PREFIX]?endpoint=http://HOST:PORT[&region=R]"


@dataclass(frozen=True)
class FileLocation:
    directory: Path


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or parts joined by "/" with a trailing "/": object keys are prefix + segment name
    endpoint: str | None  # scheme://host[:port]; None: AWS's own endpoint for the region
    region: str = DEFAULT_REGION

    def url(self) -> str:
        """The URL this location was parsed from, in its canonical form."""
        query = [f"endpoint={self.endpoint}"] if self.endpoint else []
        if self.region != DEFAULT_REGION:
            query.append(f"region={self.region}")
        path = f"/{self.prefix.rstrip('/')}" if self.prefix else ""
        return f"s3://{self.bucket}{path}" + (f"?{'&'.join(query)}" if query else "")

    def describe(self) -> str:
        where = self.endpoint or f"AWS S3 ({self.region})"
        return f"s3://{self.bucket}/{self.prefix} at {where}"


def parse_segments_url(text: str, flag: str = "--segments") -> FileLocation | S3Location:
    """``FileLocation`` or ``S3Location``; ``ValueError`` saying what is wrong and what the forms are (``flag``:
    the option that gave it, for the message)."""
    text = text.strip()
    if text.startswith("file:"):
        rest = text[len("file:"):]
        if rest.startswith("//"):  # file:///srv/segments
            rest = rest[2:]
        if not rest:
            raise ValueError(f"{flag} {text!r} names no directory; give {_FORMS}")
        return FileLocation(Path(rest))
    if not text.startswith("s3://"):
        raise ValueError(f"{flag} {text!r} is neither a file: nor an s3:// URL; give {_FORMS}")
    return _parse_s3(text, flag)


def _parse_s3(text: str, flag: str) -> S3Location:
    parts = urlsplit(text)
    if parts.fragment or "@" in parts.netloc:
        raise ValueError(f"{flag} {text!r}: no user, password or #fragment in the URL (credentials come from "
                         "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_SHARED_CREDENTIALS_FILE)")
    bucket = parts.netloc
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(f"{flag} {text!r}: {bucket!r} is not a bucket name (3 to 63 lowercase letters, digits, "
                         "dots and hyphens, starting and ending with a letter or digit)")
    pieces = [p for p in parts.path.split("/") if p]
    for piece in pieces:
        if not _PREFIX_PART.fullmatch(piece) or piece in (".", ".."):
            raise ValueError(f"{flag} {text!r}: the prefix part {piece!r} may hold only letters, digits, "
                             "'.', '_' and '-' (and is not . or ..)")
    prefix = "".join(f"{p}/" for p in pieces)
    options: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in ("endpoint", "region") or key in options:
            raise ValueError(f"{flag} {text!r}: unknown or repeated option {key!r} (only endpoint= and region=)")
        options[key] = value
    endpoint = options.get("endpoint")
    if endpoint is not None:
        endpoint = _check_endpoint(text, endpoint, flag)
    region = options.get("region", DEFAULT_REGION)
    if not re.fullmatch(r"[a-z0-9-]{1,32}", region):
        raise ValueError(f"{flag} {text!r}: {region!r} is not a region name (e.g. us-east-1)")
    return S3Location(bucket, prefix, endpoint, region)


def _check_endpoint(text: str, endpoint: str, flag: str) -> str:
    parts = urlsplit(endpoint)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok or parts.query or parts.fragment \
            or parts.path not in ("", "/") or "@" in parts.netloc:
        raise ValueError(f"{flag} {text!r}: endpoint {endpoint!r} is not http://HOST:PORT or https://HOST[:PORT]")
    return f"{parts.scheme}://{parts.netloc}"
