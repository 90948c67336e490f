"""One writer at a time, via an advisory file lock that the kernel drops when its holder dies."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from featstore.store.errors import LockedError
from featstore.store.safe_paths import open_no_follow

# What a refused writer is told; commands that write only on the side (predict, fit-head) wait.
WAIT_ADVICE = "wait for it to finish, or pass --wait (wait=True in Python) to wait for it"


class WriterLock:
    """The store's `.lock`, never followed if it is a symbolic link. `read_only` locks a store
    this process may not write (a no-op run on a read-only store still excludes writers)."""

    def __init__(self, path: Path, wait: bool = False, timeout: float | None = None,
                 read_only: bool = False, advice: str = WAIT_ADVICE) -> None:
        self.path = path
        self.wait = wait
        self.timeout = timeout
        self.read_only = read_only
        self.advice = advice
        self._fd: int | None = None

    def acquire(self) -> None:
        flags = os.O_RDONLY if self.read_only else os.O_RDWR | os.O_CREAT
        fd = open_no_follow(self.path, flags)
        start = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if not self.wait or (self.timeout is not None and waited >= self.timeout):
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise LockedError(
                        f"store {self.path.parent} is being written by another process{holder}; "
                        f"{self.advice}"
                    ) from None
                time.sleep(0.2)
        if not self.read_only:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
