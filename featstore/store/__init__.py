"""On-disk store: manifest, tensor shards (HDF5), dataset tables (Parquet), lock, commits.

Knows nothing about models: it stores named arrays per text key for opaque source fingerprints.
The reader and writer (numpy, pandas, h5py, pyarrow) are loaded on first use, so a command that
only reads the manifest starts fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from featstore.store.errors import (
    DamagedShardError,
    FeatstoreError,
    FormatVersionError,
    LockedError,
    StoreError,
)
from featstore.store.hashing import fingerprint_id
from featstore.store.keys import (
    KEY_COLUMN,
    PAIR_KEY_COLUMNS,
    clean_text,
    keys_for,
    normalize_text,
    pair_key,
    text_key,
)
from featstore.store.location import default_store_path
from featstore.store.manifest import (
    FORMAT_VERSION,
    check_name,
    fingerprints_match,
    short_model_name,
)

_LAZY = {
    "Store": "featstore.store.store",
    "names_model": "featstore.store.store",
    "open_store": "featstore.store.opening",
    "StoreWriter": "featstore.store.writer",
}

__all__ = [
    "FORMAT_VERSION", "KEY_COLUMN", "PAIR_KEY_COLUMNS", "DamagedShardError", "FeatstoreError",
    "FormatVersionError", "LockedError", "StoreError", "check_name", "clean_text",
    "default_store_path", "fingerprint_id", "fingerprints_match", "keys_for", "normalize_text",
    "pair_key", "short_model_name", "text_key", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
