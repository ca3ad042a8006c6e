"""The replica's bucket: the S3 segment backend's client (same endpoint handling, credentials and one-line errors,
store/segments/s3.py), with what the replica needs on top: any key below the prefix, metadata on a PUT and back
on a GET or HEAD (with the SHA-256 the server verified), and listings of a part of the layout. ``sht store migrate``
PUTs segments through it too (``noun``: what the bucket is, in messages).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from store.segments import SegmentStoreError
from store.segments.s3 import S3Segments, _code
from store.segments.url import S3Location


@dataclass(frozen=True)
class StoredObject:
    """What a HEAD says of an object: its size, the SHA-256 the server verified when it was PUT (hex; None when it
    was PUT without one), and its user metadata."""

    size: int
    sha256: str | None
    metadata: dict[str, str]


class ReplicaBucket(S3Segments):
    """Keys here are below the replica's prefix (``segments/...``, ``events/...``, ``replica.json``)."""

    def __init__(self, location: S3Location, cache_dir: Path, flag: str = "--replica",
                 noun: str = "the replica") -> None:
        super().__init__(location, cache_dir, cache_bytes=0)
        self.flag, self.noun = flag, noun

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def put_object(self, key: str, data: bytes, sha256_hex: str, content_type: str,
                         metadata: dict[str, str] | None = None) -> None:
        """PUT ``data`` under ``key`` with its SHA-256, which the server verifies (``BadDigest`` if the bytes it
        got differ: nothing is stored)."""
        checksum = base64.b64encode(bytes.fromhex(sha256_hex)).decode()
        try:
            reply = await self._s3().put_object(Bucket=self.bucket, Key=self.key(key), Body=data,
                                                ChecksumSHA256=checksum, ContentType=content_type,
                                                Metadata=metadata or {})
        except Exception as exc:
            raise self._explain(exc, f"copy {key} to {self.noun}") from exc
        echoed = reply.get("ChecksumSHA256")
        if echoed is not None and echoed != checksum:
            raise SegmentStoreError(f"{self.noun} at {self._where()} stored {key} with SHA-256 {echoed}, not the "
                                    f"{checksum} that was sent", code="write-failed")

    async def get_object(self, key: str) -> tuple[bytes, dict[str, str]]:
        """The object's bytes and its user metadata; ``FileNotFoundError`` when there is none."""
        try:
            reply = await self._s3().get_object(Bucket=self.bucket, Key=self.key(key))
            async with reply["Body"] as body:
                data = bytes(await body.read())
        except Exception as exc:
            if _code(exc) in ("404", "NoSuchKey"):
                raise FileNotFoundError(f"{self.description}: no object {self.key(key)}") from exc
            raise self._explain(exc, f"read {key} from {self.noun}") from exc
        return data, {str(k).lower(): str(v) for k, v in reply.get("Metadata", {}).items()}

    async def stored(self, key: str) -> StoredObject | None:
        """HEAD ``key``: its size, the SHA-256 its PUT carried and the server verified, its metadata; None when
        there is no such object. Nothing is downloaded."""
        try:
            reply = await self._s3().head_object(Bucket=self.bucket, Key=self.key(key), ChecksumMode="ENABLED")
        except Exception as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._explain(exc, f"look for {key} in {self.noun}") from exc
        checksum = reply.get("ChecksumSHA256")
        sha256 = base64.b64decode(checksum).hex() if checksum else None
        return StoredObject(int(reply.get("ContentLength", 0)), sha256,
                            {str(k).lower(): str(v) for k, v in reply.get("Metadata", {}).items()})

    async def keys_below(self, below: str) -> AsyncIterator[tuple[str, int]]:
        """(key, size) of every object whose key starts with ``below``."""
        async for page in self._pages(self.key(below)):
            for obj in page.get("Contents", []):
                yield obj["Key"][len(self.prefix):], int(obj["Size"])
