"""Head artifacts on disk: STORE/heads/NAME/{head.safetensors, head.json}. No pickle anywhere.

This module reads and writes a dict (head.json) and named arrays (head.safetensors); what they
mean is the estimator's business. head.safetensors holds every array (network weights under
`net.`, further ensemble members under `net1.`, ..., logistic regression under `logreg.`,
normaliser statistics under `norm.`); head.json holds the configuration, label map, metrics and
the fingerprints of the encoder and fusion sources. A head is written to a temporary directory
and renamed into place, so readers see the old head or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from featstore.heads.errors import HeadError
from featstore.store import Store, check_name

HEADS_DIR = "heads"
WEIGHTS = "head.safetensors"
CONFIG = "head.json"
FORMAT = "featstore-head"
FORMAT_VERSION = 1


def _root(store: Store | str | os.PathLike) -> Path:
    return store.root if isinstance(store, Store) else Path(store)


def head_dir(store: Store | str | os.PathLike, name: str) -> Path:
    check_name(name, "head")
    return _root(store) / HEADS_DIR / name


def list_heads(store: Store | str | os.PathLike) -> list[str]:
    base = _root(store) / HEADS_DIR
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / CONFIG).is_file())


def write_head(store: Store | str | os.PathLike, name: str, tensors: dict[str, np.ndarray],
               doc: dict[str, Any]) -> Path:
    """Write a head's arrays and document to STORE/heads/NAME atomically; replaces a head of
    that name."""
    final = head_dir(store, name)
    base = final.parent
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp / WEIGHTS),
                  metadata={"format": FORMAT})
        full = {"format": FORMAT, "format_version": FORMAT_VERSION,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **doc}
        try:
            text = json.dumps(full, indent=1, sort_keys=True, allow_nan=True)
        except TypeError as exc:
            raise HeadError(f"head {name}: labels or metrics are not JSON-serialisable ({exc})"
                            ) from None
        (tmp / CONFIG).write_text(text + "\n", encoding="utf-8")
        for f in (WEIGHTS, CONFIG):
            with open(tmp / f, "rb") as fh:
                os.fsync(fh.fileno())
        old = None
        if final.exists():
            old = base / f".old-{name}-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def read_head_json(store: Store | str | os.PathLike, name: str) -> dict[str, Any]:
    path = head_dir(store, name) / CONFIG
    if not path.is_file():
        root = _root(store)
        known = ", ".join(list_heads(root))
        raise HeadError(f"no head {name!r} in {root / HEADS_DIR} (heads: {known or 'none'})")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise HeadError(f"head {name}: {CONFIG} is not valid JSON ({exc})") from None
    if doc.get("format") != FORMAT or doc.get("format_version") != FORMAT_VERSION:
        raise HeadError(f"head {name}: not a {FORMAT} version {FORMAT_VERSION} artifact")
    return doc


def read_head(store: Store | str | os.PathLike, name: str
              ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A head's document and arrays, as written by `write_head`."""
    doc = read_head_json(store, name)
    return doc, load_file(str(head_dir(store, name) / WEIGHTS))
