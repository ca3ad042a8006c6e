"""``--segments URL`` parsing (store/segments/url.py), the flag on ``sht store`` and its admin commands, and
the embedded default loading no S3 client."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.segments.files import FileSegments
from store.segments.options import segments_from_args
from store.segments.url import DEFAULT_REGION, FileLocation, S3Location, parse_segments_url

REPO = Path(__file__).resolve().parents[2]


def test_the_forms_the_issue_names():
    assert parse_segments_url("file:/srv/segments") == FileLocation(Path("/srv/segments"))
    assert parse_segments_url("file:///srv/segments") == FileLocation(Path("/srv/segments"))
    assert parse_segments_url("s3://cctv?endpoint=http://nas:8333") == S3Location("cctv", "", "http://nas:8333")
    assert parse_segments_url("s3://cctv/site-a/store1?endpoint=http://10.0.0.2:9000&region=eu-west-1") == \
        S3Location("cctv", "site-a/store1/", "http://10.0.0.2:9000", "eu-west-1")
    assert parse_segments_url("s3://cctv") == S3Location("cctv", "", None, DEFAULT_REGION)  # AWS itself


@pytest.mark.parametrize(("text", "says"), [
    ("/srv/segments", "neither a file: nor an s3:// URL"),
    ("file:", "names no directory"),
    ("s3://Bad_Bucket?endpoint=http://h:1", "not a bucket name"),
    ("s3://ab?endpoint=http://h:1", "not a bucket name"),
    ("s3://cctv/../x?endpoint=http://h:1", "prefix part '..'"),
    ("s3://cctv/a b?endpoint=http://h:1", "prefix part"),
    ("s3://cctv?endpoint=ftp://h:1", "is not http://HOST:PORT"),
    ("s3://cctv?endpoint=http://h:99999", "is not http://HOST:PORT"),
    ("s3://cctv?endpoint=http://h:1/path", "is not http://HOST:PORT"),
    ("s3://cctv?endpoint=http://h:1&secret=x", "unknown or repeated option 'secret'"),
    ("s3://cctv?endpoint=http://h:1&endpoint=http://g:2", "unknown or repeated option 'endpoint'"),
    ("s3://key:secret@cctv?endpoint=http://h:1", "credentials come from AWS_ACCESS_KEY_ID"),
    ("s3://cctv?region=Not A Region", "not a region name"),
])
def test_what_is_wrong_is_said(text, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_segments_url(text)


bucket = st.from_regex(r"[a-z0-9][a-z0-9-]{1,20}[a-z0-9]", fullmatch=True)
prefix_part = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,10}", fullmatch=True)
endpoint = st.builds(lambda host, port, tls: f"{'https' if tls else 'http'}://{host}:{port}",
                     st.sampled_from(["127.0.0.1", "nas", "s3.example.net", "[::1]"]),
                     st.integers(1, 65535), st.booleans())


@given(bucket, st.lists(prefix_part, max_size=3), st.none() | endpoint,
       st.sampled_from([DEFAULT_REGION, "eu-west-1", "auto"]))
def test_a_location_round_trips_through_its_url(name, parts, where, region):
    location = S3Location(name, "".join(f"{p}/" for p in parts), where, region)
    assert parse_segments_url(location.url()) == location


@given(st.text(max_size=80))
def test_any_text_parses_or_says_why_and_nothing_else(text):
    try:
        parsed = parse_segments_url(text)
    except ValueError as exc:
        assert "--segments" in str(exc)
        return
    if isinstance(parsed, S3Location):
        assert ".." not in parsed.prefix.split("/") and not parsed.prefix.startswith("/")


def test_the_flag_makes_the_backend_and_none_is_the_default(tmp_path):
    assert segments_from_args(Namespace(root=str(tmp_path), segments=None)) is None
    files = segments_from_args(Namespace(root=str(tmp_path), segments=f"file:{tmp_path / 'disk2' / 'cctv'}"))
    assert isinstance(files, FileSegments) and files.directory == tmp_path / "disk2" / "cctv"
    s3 = segments_from_args(Namespace(root=str(tmp_path), segments="s3://cctv/a?endpoint=http://127.0.0.1:1"))
    assert s3 is not None and s3.disk_path is None and s3.description == "s3://cctv/a/ at http://127.0.0.1:1"


def run_sht(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    return subprocess.run([sys.executable, "-m", "sht", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=60, env=env)


def test_sht_store_refuses_a_bad_url_and_an_unreachable_endpoint_in_one_line_with_exit_2(tmp_path):
    bad = run_sht("store", "--root", str(tmp_path), "--segments", "s3://x", "--detect", "off")
    assert bad.returncode == 2 and "not a bucket name" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{probe.getsockname()[1]}"
    down = run_sht("store", "--root", str(tmp_path), "--port", "0", "--detect", "off",
                   "--segments", f"s3://cctv?endpoint={nobody}")
    assert down.returncode == 2, down
    lines = down.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{nobody} does not answer" in lines[0], down.stderr


def test_the_embedded_default_loads_no_s3_client():
    code = "import sys, store.app, sht.cli; print(' '.join(sorted(sys.modules)))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                cwd=REPO).stdout.split())
    assert "store.app" in loaded and not {m for m in loaded if m.split(".")[0] in ("aiobotocore", "botocore")}
