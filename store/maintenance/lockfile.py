"""One store per root: ``ROOT/store.lock``, held with ``flock`` for as long as the store runs.

The kernel drops the lock when its process dies, however it dies, so a crash never
leaves a stale lock behind. Admin commands that must not run beside a store
(``rebuild-index``, ``check --repair``, ``prune``) take the same lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "store.lock"


class StoreBusy(OSError):
    """Another process (a running store, or an admin command) holds ROOT/store.lock."""


class StoreLock:
    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, root: Path, purpose: str = "store") -> StoreLock:
        """Take the lock or raise ``StoreBusy`` naming who holds it (their pid and purpose)."""
        path = root / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StoreBusy(f"{root} is in use by {holder} ({path} is locked); a store seems to be "
                            "running there: stop it first") from None
        except BaseException:
            os.close(fd)
            raise
        # Who holds it, for the message above; informational only, the flock is the lock.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{purpose} pid {os.getpid()}\n".encode(), 0)
        return cls(fd, path)

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> StoreLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
