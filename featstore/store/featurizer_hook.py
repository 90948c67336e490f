"""Where a store handle gets the power to featurize.

The store knows nothing about models, and heads must not reach for the encoder; yet a notebook
wants `store.featurize(texts)` and a classifier fitted on raw texts wants the texts it lacks
encoded on the fly. The package root installs a featurizer here (its implementation lives in
`featstore.services`); the store only forwards to whatever is installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from featstore.store.errors import StoreError


class Featurizer(Protocol):
    def featurize_missing(self, store: Any, texts: Sequence[str], fingerprint: dict | None,
                          features: Sequence[str], model: str | None, progress: bool) -> int:
        """Encode those of `texts` whose `features` the store lacks, with the encoder of this
        fingerprint (None: the store's only encoder, else `model`); how many were encoded."""

    def featurize_sources(self, store: Any, texts: Sequence[str],
                          needs: Sequence[tuple[dict, Sequence[str]]], progress: bool,
                          laser_dir: str | None) -> int:
        """Encode those of `texts` that each source lacks, the sources given as (fingerprint,
        features); refuse, before encoding anything, a source that cannot be computed here;
        how many texts were encoded."""

    def encode(self, store: Any, texts: Any, pool: str | None, layers: Any,
               normalize: bool | None, encoder: str | None, progress: bool) -> Any:
        """float32 vectors of `texts`, those the store lacks encoded first (`Store.encode`)."""

    def featurize_missing_pairs(self, store: Any, pairs: Sequence[tuple[str, str]],
                                encoder_fingerprint: dict, features: Sequence[str],
                                progress: bool) -> int:
        """Encode jointly those of `pairs` the cross source of this encoder lacks (and their
        texts the encoder lacks); how many pairs were encoded."""

    def featurize_data(self, store: Any, data: Any, name: str | None, text_col: str | None,
                       model: str | None, progress: bool, replace: bool,
                       options: dict[str, Any]) -> dict[str, Any]:
        """Featurize a corpus file, a DataFrame or a list of texts into the store."""


_installed: list[Featurizer] = []


def install_featurizer(featurizer: Featurizer) -> None:
    _installed[:] = [featurizer]


def installed_featurizer() -> Featurizer:
    if not _installed:
        raise StoreError("no featurizer is installed; import featstore (not only featstore.store)")
    return _installed[0]
