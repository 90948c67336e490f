"""Opening a store by path: the reader, after making an empty store where asked."""

from __future__ import annotations

import os

from featstore.store.errors import StoreError
from featstore.store.location import default_store_path
from featstore.store.store import Store


def open_store(path: str | os.PathLike | None = None, create: bool = False) -> Store:
    """Open a store (see `default_store_path` for the default); `create` makes an empty one
    where there is none."""
    root = default_store_path(path)
    if not (root / "manifest.json").is_file():
        if not create:
            raise StoreError(f"no featstore store at {root} (featstore.open(path, create=True) "
                             "makes one)")
        from featstore.store.writer import StoreWriter

        with StoreWriter(root):
            pass
    return Store(root)
