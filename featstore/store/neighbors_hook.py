"""Where a store handle gets the power to search its datasets.

`store.neighbors(...)` must featurize query texts the store lacks, which the store may not do
itself (it knows nothing about models); the package root installs a searcher here (its
implementation lives in `featstore.services`), as it installs the featurizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from featstore.store.errors import StoreError


class Searcher(Protocol):
    def neighbors(self, store: Any, queries: Sequence[str], dataset: str, k: int,
                  options: dict[str, Any]) -> Any:
        """The k nearest stored texts of `dataset` for each query, as a DataFrame."""


_installed: list[Searcher] = []


def install_searcher(searcher: Searcher) -> None:
    _installed[:] = [searcher]


def installed_searcher() -> Searcher:
    if not _installed:
        raise StoreError("no searcher is installed; import featstore (not only featstore.store)")
    return _installed[0]
