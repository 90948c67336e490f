"""Crash-safe file replacement: write beside, fsync, rename, fsync the directory.

A reader or a crash sees either the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from featstore.store.safe_paths import open_no_follow


def fsync_path(path: Path) -> None:
    """fsync a file's data, or a directory's entries (so a rename in it survives a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: Path, final: Path) -> None:
    """Make a fully written temporary file visible under its final name, durably."""
    fsync_path(tmp)
    os.replace(tmp, final)
    fsync_path(final.parent)


def write_json_atomic(path: Path, data: dict, tmp_dir: Path) -> None:
    tmp = tmp_dir / f"{path.name}.{os.getpid()}.tmp"
    fd = open_no_follow(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with open(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.write("\n")
    publish(tmp, path)


def can_create_in(directory: Path) -> bool:
    """Whether a file can be created in `directory`, or in the nearest existing directory above
    it when it does not exist yet. Tried for real (os.access says yes to root on a read-only
    mount), so output is refused before the work that would produce it, not after."""
    here = Path(directory).absolute()
    while not here.exists() and here != here.parent:
        here = here.parent
    if not here.is_dir():
        return False
    try:
        fd, probe = tempfile.mkstemp(dir=here, prefix=".featstore-probe-")
    except OSError:
        return False
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return True
