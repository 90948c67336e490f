"""A source's fingerprint without loading it: a pass that finds nothing new loads no model.

Learning an encoder's fingerprint means loading it and hashing its files (seconds). The result is
cached as JSON against the identity of the model files: path, size, mtime, inode and ctime of
every file (for a hub model, the local hub cache's snapshot, whose name is the revision) plus the
settings that shape the fingerprint. Anything different (a file touched, replaced, added) is a
miss, and the model is loaded and hashed again; an entry is written only if the files kept their
identity while the model loaded. When a pass does find new texts the engine loads the model
anyway and checks its fresh fingerprint against the cached one, so a stale entry cannot write
features under the wrong identity.

The cache lives in $FEATSTORE_CACHE_DIR, else $XDG_CACHE_HOME/featstore, else ~/.cache/featstore;
it is only ever a shortcut: unreadable, damaged or unwritable means a miss.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from importlib import metadata
from pathlib import Path

from featstore.version import VERSION

CACHE_ENV = "FEATSTORE_CACHE_DIR"
_FORMAT = 2


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "featstore"


def _hub_snapshot(model: str) -> Path | None:
    """The local hub cache's snapshot directory of a hub id, without any network call."""
    try:
        from huggingface_hub import try_to_load_from_cache
        found = try_to_load_from_cache(model, "config.json")
    except (ImportError, ValueError, OSError):
        return None
    return Path(found).parent if isinstance(found, str) else None


def files_identity(source: str) -> dict | None:
    """Path, size, mtime, inode and ctime of every file a model directory (or hub snapshot)
    holds (a file swapped back with its old mtime still differs); None when the source cannot
    be listed."""
    path = Path(source).expanduser()
    revision = None
    if not path.is_dir():
        snapshot = _hub_snapshot(source)
        if snapshot is None:
            return None
        path, revision = snapshot, snapshot.name
    try:
        root = path.resolve()
        files = []
        for p in sorted(root.rglob("*")):
            rel = p.relative_to(root)
            if any(part.startswith(".") for part in rel.parts) or not p.is_file():
                continue
            st = p.stat()  # follows the hub cache's links to its blobs
            files.append([rel.as_posix(), st.st_size, st.st_mtime_ns, st.st_ino,
                          st.st_ctime_ns])
    except OSError:
        return None
    return {"root": str(root), "revision": revision, "files": files}


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cache_key(kind: str, identity: dict, settings: dict) -> str:
    blob = json.dumps({"format": _FORMAT, "featstore": VERSION, "kind": kind,
                       "identity": identity, "settings": settings},
                      sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _entry_path(key: str) -> Path:
    return cache_dir() / "fingerprints" / f"{key}.json"


def lookup(key: str) -> dict | None:
    """The cached value for `key`, or None (absent, unreadable or damaged)."""
    try:
        data = json.loads(_entry_path(key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key or not isinstance(
            data.get("value"), dict):
        return None
    return data["value"]


def remember(key: str, value: dict) -> None:
    """Store `value` under `key` atomically; a cache that cannot be written is skipped."""
    path = _entry_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"key": key, "value": value}, fh, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError:
        return


def forget(key: str) -> None:
    with contextlib.suppress(OSError):
        _entry_path(key).unlink()
