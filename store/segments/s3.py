"""The S3 backend: segments as objects in a bucket of any S3-compatible store (AWS S3, MinIO, Ceph RGW,
SeaweedFS), through aiobotocore (the ``cluster`` extra).

- Keys: the bucket's prefix + the segment name (``CAMERA/YYYY-MM-DD/HH/<start_us>.mp4``).
- Durability: every PUT carries ``x-amz-checksum-sha256``, the SHA-256 the node sent and the store checked;
  the server recomputes it and refuses the object (``BadDigest``) when the bytes it got differ, so the index
  row, written only after ``put`` returns, always names an object that holds exactly those bytes.
- Reads, from worker threads: ``open_media`` reads an object in 256 KiB ranged GETs through an in-memory block
  cache shared by the store's readers (``store/segments/ranged.py``): thumbnails and exports, which need the
  MP4's index and a few GOPs of it. ``open_local`` fetches whole objects into a bounded local cache
  (``SegmentCache``): the readers that read every byte anyway (hashes, re-indexing, the detector).
- Never overwritten: stores sharing a bucket can race on one segment name (the per-process segment lock of
  store/ingest/writer.py does not span stores), so a PUT carries ``If-None-Match: *`` and the server refuses it
  (412) when the key exists; then the existing object's SHA-256 decides: the same bytes are already stored, other
  bytes are a ``SegmentConflict``. Whether the server honours the header is probed once, at the first PUT (AWS
  S3, MinIO and SeaweedFS 4.x do); where it does not, a HEAD before each PUT does the same check, with a window
  between the two (docs/cluster.md, "What each failure does").
- Deletes: ``DeleteObjects``, up to 1000 keys a request. Quarantine: a copy under ``PREFIX_quarantine/``, then
  the original deleted.

Credentials come from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (or ``AWS_SHARED_CREDENTIALS_FILE``),
as for every AWS tool. Every failure becomes a ``SegmentStoreError`` naming the endpoint and what to do.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from store.segments import (
    SegmentConflict,
    SegmentStoreError,
    StoredSegment,
    days_wanted,
    owners_of,
    spans_hours,
    start_of,
)
from store.segments.cache import DEFAULT_CACHE_BYTES, SegmentCache
from store.segments.deadline import DeadlinedClient
from store.segments.ranged import DEFAULT_BLOCK_CACHE_BYTES, BlockCache, RangedReader, RangeReply
from store.segments.url import S3Location

log = logging.getLogger(__name__)

DELETE_BATCH = 1000  # the most keys DeleteObjects takes
QUARANTINE = "_quarantine/"  # below the prefix; no camera id starts with "_"
PROBES = "_sht/"  # below the prefix: the conditional-PUT probe's objects (each deleted after it)
FETCH_TIMEOUT_S = 120.0
RANGE_TIMEOUT_S = 45.0  # one ranged GET: the client's own limits (5 s connect, 10 s read, 2 tries) come first
_CREDENTIALS = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_SHARED_CREDENTIALS_FILE)"
_BAD_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken",
                    "ExpiredToken", "403"}
_BAD_DIGEST = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "XAmzContentChecksumMismatch"}
_EXISTS = {"PreconditionFailed", "412"}  # If-None-Match: * and the key is there


class S3Segments:
    flag = "--segments"  # the option that named this bucket, for messages (the replica's is --replica)

    def __init__(self, location: S3Location, cache_dir: Path, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 block_cache_bytes: int = DEFAULT_BLOCK_CACHE_BYTES) -> None:
        self.location = location
        self.bucket, self.prefix = location.bucket, location.prefix
        self.cache = SegmentCache(cache_dir, cache_bytes)
        self.blocks = BlockCache(block_cache_bytes)
        self._client: Any = None
        self._exit: contextlib.AsyncExitStack | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conditional: bool | None = None  # does the server honour If-None-Match: * (None: not probed yet)
        self._probing = asyncio.Lock()

    @property
    def description(self) -> str:
        return self.location.describe()

    @property
    def disk_path(self) -> None:
        return None

    async def start(self) -> None:
        try:
            from aiobotocore.session import get_session
            from botocore.config import Config
        except ImportError as exc:
            raise SegmentStoreError(f"{self.flag} s3:// needs aiobotocore ({exc}): pip install 'sht-cctv[cluster]'",
                                    retry=False) from exc
        config = Config(s3={"addressing_style": "path"},  # what S3-compatible stores all take
                        retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=10,
                        # Checksums only where we give them (PUT) or S3 requires them (DeleteObjects).
                        request_checksum_calculation="when_required", response_checksum_validation="when_required")
        for noisy in ("aiobotocore.credentials", "botocore.credentials"):  # "Found credentials in ...": each start
            logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger(noisy).getEffectiveLevel()))
        self._loop = asyncio.get_running_loop()
        self._exit = contextlib.AsyncExitStack()
        client = await self._exit.enter_async_context(get_session().create_client(
            "s3", endpoint_url=self.location.endpoint, region_name=self.location.region, config=config))
        self._client = DeadlinedClient(client, self._where())  # a hung endpoint must not hold a request for minutes
        await asyncio.to_thread(self.cache.clear)
        self.blocks.clear()
        try:
            await self._client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            await self.close()
            raise self._explain(exc, f"open bucket {self.bucket}") from exc

    async def close(self) -> None:
        if self._exit is not None:
            exit_stack, self._exit, self._client = self._exit, None, None
            await exit_stack.aclose()

    async def remove_temporaries(self) -> list[str]:
        return []  # a PUT is all or nothing: nothing half-written to clear

    def key(self, name: str) -> str:
        return self.prefix + name

    async def put(self, name: str, data: memoryview | bytes, sha256_hex: str) -> None:
        checksum = base64.b64encode(bytes.fromhex(sha256_hex)).decode()
        conditional = await self._honours_if_none_match()
        if not conditional and await self._already_there(name, sha256_hex):
            return
        try:
            reply = await self._s3().put_object(Bucket=self.bucket, Key=self.key(name), Body=bytes(data),
                                                ChecksumSHA256=checksum, ContentType="video/mp4",
                                                **({"IfNoneMatch": "*"} if conditional else {}))
        except Exception as exc:
            if _code(exc) in _EXISTS and await self._already_there(name, sha256_hex):
                return
            raise self._explain(exc, f"store {name}") from exc
        echoed = reply.get("ChecksumSHA256")
        if echoed is not None and echoed != checksum:  # it verified something else: do not trust the object
            raise SegmentStoreError(f"S3 at {self._where()} stored {name} with SHA-256 {echoed}, not the {checksum} "
                                    "that was sent", code="write-failed")

    async def _already_there(self, name: str, sha256_hex: str) -> bool:
        """True if ``name`` holds exactly these bytes, False if there is no such object; ``SegmentConflict`` if it
        holds others (never overwritten: another store's row may name them)."""
        stored = await self.stored_sha256(name)
        if stored is None or stored == sha256_hex:
            return stored is not None
        raise SegmentConflict(f"S3 at {self._where()} already holds other bytes under {self.key(name)} (SHA-256 "
                              f"{stored[:16]}…, these are {sha256_hex[:16]}…), written by another store; not "
                              "replaced", stored)

    async def stored_sha256(self, name: str) -> str | None:
        """The SHA-256 (hex) of the object under ``name``, None if there is none: the checksum the server kept
        from its PUT, else (an object written without one) its bytes hashed."""
        try:
            head = await self._s3().head_object(Bucket=self.bucket, Key=self.key(name), ChecksumMode="ENABLED")
        except Exception as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._explain(exc, f"look for {name}") from exc
        kept = head.get("ChecksumSHA256")
        if kept and "-" not in kept:  # "-N": a multipart upload's checksum of checksums, not of the bytes
            return base64.b64decode(kept).hex()
        try:
            data = await self._get(name)
        except FileNotFoundError:
            return None
        return await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())

    async def _honours_if_none_match(self) -> bool:
        """Probed once per process: a PUT of a key of our own, then the same PUT with ``If-None-Match: *``, which
        must be refused (412); the key is deleted after. A server that ignores the header (or refuses it as not
        implemented) gets a HEAD before each PUT instead, and a warning."""
        async with self._probing:
            if self._conditional is not None:
                return self._conditional
            probe = f"{PROBES}conditional-put-{uuid.uuid4().hex}"
            try:
                for _ in range(2):
                    await self._s3().put_object(Bucket=self.bucket, Key=self.key(probe), Body=b"probe",
                                                IfNoneMatch="*")
                honoured = False
            except Exception as exc:
                if _code(exc) not in _EXISTS | {"NotImplemented", "501"}:
                    raise self._explain(exc, "write a probe object") from exc
                honoured = _code(exc) in _EXISTS
            await self.delete_many([probe])
            if not honoured:
                log.warning("S3 at %s does not honour If-None-Match: * on PUT: each segment is looked for (HEAD) "
                            "before its PUT instead; two stores writing the same segment at the same moment can "
                            "still overwrite each other's object", self._where())
            self._conditional = honoured
            return honoured

    async def exists(self, name: str) -> bool:
        try:
            await self._s3().head_object(Bucket=self.bucket, Key=self.key(name))
            return True
        except Exception as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._explain(exc, f"look for {name}") from exc

    @contextlib.contextmanager
    def open_local(self, name: str) -> Iterator[Path]:
        loop = self._worker_loop("open_local")

        def fetch() -> bytes:
            future = asyncio.run_coroutine_threadsafe(self._get(name), loop)
            try:
                return future.result(FETCH_TIMEOUT_S)
            except TimeoutError as exc:
                future.cancel()  # else the GET goes on, holding a connection and its bytes, for no one
                raise SegmentStoreError(f"cannot read {name}: S3 at {self._where()} did not send it within "
                                        f"{FETCH_TIMEOUT_S:g} s; ask again") from exc

        with self.cache.hold(name, fetch) as path:
            yield path

    @contextlib.contextmanager
    def open_media(self, name: str) -> Iterator[RangedReader]:
        loop = self._worker_loop("open_media")

        def fetch(ranges: list[str]) -> list[RangeReply]:
            future = asyncio.run_coroutine_threadsafe(self._get_ranges(name, ranges), loop)
            try:
                return future.result(RANGE_TIMEOUT_S)
            except TimeoutError as exc:
                future.cancel()
                raise SegmentStoreError(f"cannot read {name}: S3 at {self._where()} sent no {', '.join(ranges)} "
                                        f"within {RANGE_TIMEOUT_S:.0f} s; ask again") from exc

        with contextlib.closing(RangedReader(name, f"s3://{self.bucket}/{self.key(name)}", fetch,
                                             self.blocks)) as reader:
            yield reader

    def _worker_loop(self, what: str) -> asyncio.AbstractEventLoop:
        """The loop the client lives on, for a worker thread's requests (never called on that loop: it blocks)."""
        loop = self._loop
        if loop is None or self._client is None:
            raise SegmentStoreError(f"{self.description} is not open (start() first)", retry=False)
        with contextlib.suppress(RuntimeError):
            if asyncio.get_running_loop() is loop:
                raise AssertionError(f"{what} blocks: call it from a worker thread, not the event loop")
        return loop

    async def _get_ranges(self, name: str, ranges: list[str]) -> list[RangeReply]:
        """The GETs at once; the first failure raised once all are done (none left running unheard)."""
        replies = await asyncio.gather(*(self._get_range(name, r) for r in ranges), return_exceptions=True)
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return [r for r in replies if isinstance(r, RangeReply)]

    async def _get_range(self, name: str, byte_range: str) -> RangeReply:
        try:
            reply = await self._s3().get_object(Bucket=self.bucket, Key=self.key(name), Range=byte_range)
            async with reply["Body"] as body:
                data = bytes(await body.read())
        except Exception as exc:
            if _code(exc) in ("404", "NoSuchKey"):
                raise FileNotFoundError(f"{self.description}: no object {self.key(name)}") from exc
            if _code(exc) in ("InvalidRange", "416"):  # past the end: an empty object (we ask within the size)
                return await self._empty(name)
            raise self._explain(exc, f"read {byte_range} of {name}") from exc
        return RangeReply.parse(data, reply.get("ContentRange"), str(reply.get("ETag", "")))

    async def _get(self, name: str) -> bytes:
        try:
            reply = await self._s3().get_object(Bucket=self.bucket, Key=self.key(name))
            async with reply["Body"] as body:
                return bytes(await body.read())
        except Exception as exc:
            if _code(exc) in ("404", "NoSuchKey"):
                raise FileNotFoundError(f"{self.description}: no object {self.key(name)}") from exc
            raise self._explain(exc, f"read {name}") from exc

    async def _empty(self, name: str) -> RangeReply:
        try:
            head = await self._s3().head_object(Bucket=self.bucket, Key=self.key(name))
        except Exception as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(f"{self.description}: no object {self.key(name)}") from exc
            raise self._explain(exc, f"look for {name}") from exc
        return RangeReply(b"", 0, int(head["ContentLength"]), str(head.get("ETag", "")))

    async def delete_many(self, names: list[str]) -> int:
        errors = 0
        for i in range(0, len(names), DELETE_BATCH):
            batch = names[i:i + DELETE_BATCH]
            try:
                reply = await self._s3().delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": self.key(n)} for n in batch], "Quiet": True})
            except Exception as exc:
                log.error("could not delete %d objects (their rows are gone; they stay listed for deletion and are "
                          "tried again at the next collection): %s", len(batch), self._explain(exc, "delete"))
                errors += len(batch)
                continue
            failed = [e for e in reply.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            for e in failed[:5]:
                log.error("could not delete %s: %s %s", e.get("Key"), e.get("Code"), e.get("Message"))
            errors += len(failed)
        await asyncio.to_thread(self.cache.forget, names)
        self.blocks.forget(names)
        return errors

    async def sync_deleted(self, hours: list[str]) -> None:
        return None  # a DeleteObjects that answered is done

    async def hours_between(self, camera: str, spans: list[tuple[int, int]]) -> dict[str, list[int]]:
        keys = spans_hours(spans)
        found: dict[str, list[int]] = {}
        for day in await self._children(f"{camera}/"):
            if not days_wanted(day, keys):
                continue
            for hour in await self._children(f"{camera}/{day}/"):
                owners = owners_of(day, hour, keys)
                if owners:
                    found[f"{camera}/{day}/{hour}"] = owners
        return found

    async def _children(self, below: str) -> list[str]:
        """The "directories" one level below ``below`` (a name prefix ending in /), sorted."""
        names: list[str] = []
        async for page in self._pages(self.key(below), delimiter="/"):
            names += [p["Prefix"][len(self.key(below)):].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return sorted(names)

    async def starts_in_hour(self, hour: str) -> list[int]:
        starts = []
        async for page in self._pages(self.key(f"{hour}/")):
            starts += [s for obj in page.get("Contents", []) if (s := start_of(obj["Key"])) is not None]
        return starts

    async def list_all(self) -> AsyncIterator[StoredSegment]:
        async for page in self._pages(self.prefix):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(self.prefix):]
                if not name.startswith((QUARANTINE, PROBES)):
                    yield StoredSegment(name, int(obj["Size"]), _micros(obj["LastModified"]))

    async def _pages(self, prefix: str, delimiter: str | None = None) -> AsyncIterator[dict[str, Any]]:
        extra = {"Delimiter": delimiter} if delimiter else {}
        try:
            async for page in self._s3().get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=prefix, **extra):
                yield page
        except Exception as exc:
            raise self._explain(exc, f"list {prefix or 'the bucket'}") from exc

    async def quarantine(self, name: str) -> str:
        dest = f"{QUARANTINE}{name}"
        n = 0
        while await self.exists(dest):
            n += 1
            dest = f"{QUARANTINE}{name}.{n}"
        try:
            await self._s3().copy_object(Bucket=self.bucket, Key=self.key(dest),
                                         CopySource={"Bucket": self.bucket, "Key": self.key(name)})
        except Exception as exc:
            raise self._explain(exc, f"copy {name} to quarantine") from exc
        if await self.delete_many([name]):
            raise SegmentStoreError(f"copied {name} to {dest} but could not delete it (see the log)")
        return f"s3://{self.bucket}/{self.key(dest)}"

    def _s3(self) -> Any:
        if self._client is None:
            raise SegmentStoreError(f"{self.description} is not open (start() first)", retry=False)
        return self._client

    def _where(self) -> str:
        return self.location.endpoint or f"AWS S3 ({self.location.region})"

    def _explain(self, exc: BaseException, what: str) -> SegmentStoreError:
        """One line: what failed, at which endpoint, and what to do about it."""
        if isinstance(exc, SegmentStoreError):
            return exc
        from botocore import exceptions as boto

        where, bucket = self._where(), self.bucket
        if isinstance(exc, (boto.NoCredentialsError, boto.PartialCredentialsError)):
            return SegmentStoreError(f"cannot {what}: no S3 credentials for {where}: set {_CREDENTIALS}")
        if isinstance(exc, (boto.EndpointConnectionError, boto.ConnectionError, boto.HTTPClientError,
                            asyncio.TimeoutError, OSError)):
            return SegmentStoreError(f"cannot {what}: the S3 endpoint {where} does not answer ({exc}); start it or "
                                     f"fix {self.flag}")
        code = _code(exc)
        message = exc.response.get("Error", {}).get("Message", "") if isinstance(exc, boto.ClientError) else str(exc)
        if code in _BAD_CREDENTIALS:
            return SegmentStoreError(f"cannot {what}: S3 at {where} refused the credentials for bucket {bucket} "
                                     f"({code}: {message}); check {_CREDENTIALS} and the user's rights")
        no_bucket = code == "NoSuchBucket" or (code == "404" and what.startswith("open bucket"))
        if no_bucket:
            return SegmentStoreError(f"cannot {what}: there is no bucket {bucket} at {where}; create it (e.g. "
                                     f"aws s3 mb s3://{bucket} --endpoint-url {where}) or fix {self.flag}")
        if code in _BAD_DIGEST:
            return SegmentStoreError(f"cannot {what}: S3 at {where} says the bytes it received do not match their "
                                     f"SHA-256 ({code}): damaged on the way, not stored", code="write-failed")
        return SegmentStoreError(f"cannot {what}: S3 at {where} answered {code or type(exc).__name__}: "
                                 f"{message or exc}")


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", "") or response.get("ResponseMetadata", {}).get(
        "HTTPStatusCode", ""))


def _micros(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000)
