"""featstore: run a frozen encoder once, train pooling and fusion heads on the cached tensors.

    >>> import featstore
    >>> store = featstore.open("featstore")
"""

from __future__ import annotations

from typing import Any

from featstore.store.errors import FeatstoreError, StoreError
from featstore.store.featurizer_hook import install_featurizer
from featstore.store.neighbors_hook import install_searcher
from featstore.version import VERSION as __version__

__all__ = ["FeatstoreError", "Store", "StoreError", "__version__", "encode", "open",
           "open_store"]


class _ServicesFeaturizer:
    """The featurizer every store handle forwards to, loaded on first use."""

    def __getattr__(self, name: str) -> Any:
        from featstore.services.store_featurizer import StoreFeaturizer

        return getattr(StoreFeaturizer(), name)


install_featurizer(_ServicesFeaturizer())


def encode(texts: Any, store: Any = None, model: str | None = None, pool: str | None = None,
           layers: Any = None, normalize: bool | None = None, progress: bool = False) -> Any:
    """What `SentenceTransformer(model).encode(texts)` returns (float32 [n, dim], pooled and
    normalised as the model's own `encode` does), read from the store at `store` (made if
    missing; default $FEATSTORE_DIR, else ./featstore): each text is encoded once, ever.
    `model`: a model directory or id, or the store's encoder by name (default: the store's
    only encoder, else the bundled all-MiniLM-L6-v2); see `Store.encode`."""
    from featstore.store.opening import open_store

    return open_store(store, create=True).encode(texts, pool=pool, layers=layers,
                                                 normalize=normalize, encoder=model,
                                                 progress=progress)


class _ServicesSearcher:
    """The searcher every store handle forwards `neighbors` to, loaded on first use."""

    def __getattr__(self, name: str) -> Any:
        from featstore.services.neighbors import StoreSearcher

        return getattr(StoreSearcher(), name)


install_searcher(_ServicesSearcher())


def __getattr__(name: str) -> Any:
    # The reader (numpy, pandas, h5py) loads on first use: `featstore --help` stays fast.
    if name in ("open", "open_store"):
        from featstore.store.opening import open_store

        return open_store
    if name == "Store":
        from featstore.store.store import Store

        return Store
    raise AttributeError(f"module 'featstore' has no attribute {name!r}")
