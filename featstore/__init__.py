"""featstore: run a frozen encoder once, train pooling and fusion heads on the cached tensors."""

from featstore.store import FeatstoreError, Store, StoreError, open_store

open = open_store  # noqa: A001  featstore.open(path) is the notebook entry point

__all__ = ["FeatstoreError", "Store", "StoreError", "open", "open_store"]
__version__ = "0.1.0"
