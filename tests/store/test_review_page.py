"""``/review`` and ``/web/`` (store/serve/review_page.py) through a real StoreServer on loopback: what the page gets on
its ``<body>``, the refusals, and the page's files."""

from __future__ import annotations

import asyncio
import html
import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import quote
from urllib.request import urlopen

import pytest

from shared.auth import AccessControl
from store.admin.keys import KeyStore
from store.index import index_path
from store.index.db import Index
from store.ingest.writer import Ingestor
from store.serve.review_page import iso_utc, review_target
from store.serve.server import StoreServer


def body_attributes(page: str) -> dict[str, str]:
    tag = re.search(r"<body([^>]*)>", page)
    assert tag is not None
    return {k: html.unescape(v) for k, v in re.findall(r' ([a-z-]+)="([^"]*)"', tag.group(1))}


def test_review_target_reads_the_cli_time_forms():
    attributes, refused = review_target("/review?camera=cam0&at=2026-11-26T08:12:00.5Z")
    assert refused is None
    assert attributes == {"data-review-camera": "cam0", "data-review-at": "2026-11-26T08:12:00.500000Z"}
    now = datetime.now(UTC).timestamp()
    attributes, refused = review_target("/review?camera=cam0&at=10m+ago")
    assert refused is None
    at = datetime.fromisoformat(attributes["data-review-at"].replace("Z", "+00:00")).timestamp()
    assert abs(now - 600 - at) < 5
    assert review_target("/review?camera=cam0&at=@1764144720")[0]["data-review-at"] == "2025-11-26T08:12:00.000000Z"


@pytest.mark.parametrize("target,words", [
    ("/review", "review needs one camera and one time"),
    ("/review?camera=cam0", "review needs one camera and one time"),
    ("/review?camera=cam0&camera=cam1&at=now", "review needs one camera and one time"),
    ("/review?camera=Cam%200&at=now", "camera 'Cam 0' is not valid"),
    ("/review?camera=cam0&at=half+past+ten", "'half past ten' is not a time"),
])
def test_review_target_refusals_say_why(target, words):
    _, refused = review_target(target)
    assert refused is not None and words in refused


def test_iso_utc():
    assert iso_utc(0) == "1970-01-01T00:00:00.000000Z"
    assert iso_utc(1_764_144_720_123_456) == "2025-11-26T08:12:00.123456Z"


def test_review_and_web_over_http(tmp_path: Path):
    async def main() -> None:
        root = tmp_path / "store"
        root.mkdir()
        keys = KeyStore(root)
        viewer = keys.issue("viewer", "v", 600)[0]
        index = await Index.open(index_path(root))
        server = StoreServer(Ingestor(root, index), index, AccessControl(keys.verifier()), keys=keys)
        port = await server.start("127.0.0.1", 0)
        base = f"http://127.0.0.1:{port}"

        def get(path: str) -> tuple[int, str, str]:
            try:
                with urlopen(base + path, timeout=5) as r:
                    return r.status, r.headers["Content-Type"], r.read().decode()
            except HTTPError as exc:
                return exc.code, exc.headers["Content-Type"], exc.read().decode()

        try:
            token = quote(viewer)
            status, kind, page = await asyncio.to_thread(get, f"/review?camera=cam0&at=2026-11-26T08:12Z&token={token}")
            assert status == 200 and kind.startswith("text/html")
            assert body_attributes(page) == {"data-review-camera": "cam0",
                                             "data-review-at": "2026-11-26T08:12:00.000000Z"}
            assert '<script src="/web/review.js">' in page
            # A bad time: 400, and the page says why (escaped into the attribute, never markup).
            status, _, page = await asyncio.to_thread(get, f"/review?camera=cam0&at=%3Cb%3E&token={token}")
            assert status == 400
            assert body_attributes(page)["data-review-error"].startswith("'<b>' is not a time")
            assert "&lt;b&gt;" in page and "'<b>'" not in page
            # Without a token: refused like the page itself.
            assert (await asyncio.to_thread(get, "/review?camera=cam0&at=now"))[0] == 401
            # The page's files: no token needed, only those.
            status, kind, script = await asyncio.to_thread(get, "/web/review.js")
            assert status == 200 and kind.startswith("text/javascript") and "requestVideoFrameCallback" in script
            status, kind, script = await asyncio.to_thread(get, "/web/review-day.js")
            assert status == 200 and kind.startswith("text/javascript") and "window.reviewDay" in script
            status, kind, script = await asyncio.to_thread(get, "/web/review-timeline.js")
            assert status == 200 and kind.startswith("text/javascript") and "window.reviewTimeline" in script
            status, kind, _ = await asyncio.to_thread(get, "/web/review.css")
            assert status == 200 and kind.startswith("text/css")
            status, _, text = await asyncio.to_thread(get, "/web/index.html")
            assert status == 404 and "/web/review.js" in text
        finally:
            await server.close()
            await index.close()

    asyncio.run(main())
