"""featstore: run a frozen encoder once, train pooling and fusion heads on the cached tensors.

    >>> import featstore
    >>> store = featstore.open("featstore")
"""

from __future__ import annotations

from typing import Any

from featstore.store.errors import FeatstoreError, StoreError

__all__ = ["FeatstoreError", "Store", "StoreError", "open", "open_store"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The reader (numpy, pandas, h5py) loads on first use: `featstore --help` stays fast.
    if name in ("open", "open_store"):
        from featstore.store.store import open_store

        return open_store
    if name == "Store":
        from featstore.store.store import Store

        return Store
    raise AttributeError(f"module 'featstore' has no attribute {name!r}")
