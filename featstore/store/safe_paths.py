"""Paths inside a store, checked before they are opened, renamed, swept or locked.

A store holds no symbolic links: featstore never follows one it did not make, so a link planted
inside a store (`tmp`, `.lock`, `heads`, a shard) cannot make it read, overwrite or delete a
byte outside. The store's root itself may be a link (that is where the user keeps the store);
below it, every component must be a real directory or file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from featstore.store.errors import StoreError


def _link_error(path: Path) -> StoreError:
    return StoreError(f"{path} is a symbolic link; a store holds none and featstore never "
                      "follows one (remove it)")


def check_no_links(root: Path, path: Path) -> Path:
    """`path` (at or below `root`) with no symbolic link below the root; returns it."""
    cur = root
    for part in path.relative_to(root).parts:
        cur = cur / part
        try:
            mode = os.lstat(cur).st_mode
        except FileNotFoundError:
            return path  # nothing below a missing component can be a link
        except OSError as exc:
            raise StoreError(f"cannot inspect {cur}: {exc.strerror}") from None
        if stat.S_ISLNK(mode):
            raise _link_error(cur)
    return path


def real_dir(root: Path, *parts: str, create: bool = False) -> Path:
    """The directory root/parts..., refused if it or a component is a link or not a directory;
    created (with missing parents) when `create`."""
    path = root.joinpath(*parts)
    check_no_links(root, path)
    if create:
        cur = root
        for part in parts:
            cur = cur / part
            try:
                cur.mkdir(exist_ok=True)
            except FileExistsError:
                pass
            except OSError as exc:
                raise StoreError(f"cannot create {cur}: {exc.strerror}") from None
            check_no_links(root, cur)
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path} should be a directory of the store but is not (remove it)")
    return path


def open_no_follow(path: Path, flags: int, mode: int = 0o644) -> int:
    """os.open that refuses a symbolic link at the last component (ELOOP) in one line."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW, mode)
    except OSError as exc:
        if os.path.islink(path):
            raise _link_error(path) from None
        raise StoreError(f"cannot open {path}: {exc.strerror}") from None
