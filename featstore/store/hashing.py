"""Every digest featstore computes: file and tree checksums, canonical JSON, fingerprint ids.

One place, so a checksum written by one module is always recomputed the same way by another.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path

_BLOCK = 1 << 20
ID_DIGITS = 12


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Streamed, so a large file is never held in memory just to be hashed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def sha256_tree(root: Path, files: Iterable[Path]) -> str:
    """One digest over several files of a directory: each file's relative path, then its bytes,
    in path order, so renaming or editing any file changes it."""
    h = hashlib.sha256()
    for p in sorted(files):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(_BLOCK), b""):
                h.update(block)
    return h.hexdigest()


def canonical_json(data: object) -> bytes:
    """Sorted keys, no whitespace: equal data always gives equal bytes."""
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sha256_json(data: object) -> str:
    return sha256_bytes(canonical_json(data))


def fingerprint_id(label: str, fingerprint: dict) -> str:
    """A readable, path-safe id for a fingerprint: a slug of `label` and a digest of the rest.

    The store looks sources up by fingerprint, never by recomputing an id, so ids written under
    an older rule stay valid.
    """
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", label.rstrip("/").split("/")[-1]).strip("-.")
    return f"{slug[:60] or 'source'}-{sha256_json(fingerprint)[:ID_DIGITS]}"
