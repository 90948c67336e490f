"""On-disk store: manifest, tensor shards (HDF5), dataset tables (Parquet), lock, commits.

Knows nothing about models: it stores named arrays per text key for opaque encoder fingerprints.
"""

from featstore.store.errors import (
    DamagedShardError,
    FeatstoreError,
    FormatVersionError,
    LockedError,
    StoreError,
)
from featstore.store.keys import keys_for, normalize_text, text_key
from featstore.store.manifest import FORMAT_VERSION, check_name
from featstore.store.store import Store, default_store_path, open_store
from featstore.store.tables import KEY_COLUMN
from featstore.store.writer import StoreWriter

__all__ = [
    "FORMAT_VERSION", "KEY_COLUMN", "DamagedShardError", "FeatstoreError", "FormatVersionError",
    "LockedError", "Store", "StoreError", "StoreWriter", "check_name", "default_store_path",
    "keys_for", "normalize_text", "open_store", "text_key",
]
