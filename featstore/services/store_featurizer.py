"""What a store handle's `featurize`, `featurize_missing` and `featurize_sources` do: the
featurizer the package root installs into the store (`featstore.store.featurizer_hook`)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
from pyarrow import ArrowException

from featstore.featurize.driver import featurize_corpus, featurize_texts
from featstore.featurize.options import FeaturizeOptions
from featstore.services.encoding import encode_texts
from featstore.services.featurizing import (
    featurize_file,
    featurize_missing,
    featurize_missing_pairs,
    options_for_store,
    quiet,
)
from featstore.services.head_sources import featurize_sources
from featstore.store import FeatstoreError, Store

DATAFRAME_SOURCE = "<DataFrame>"


class StoreFeaturizer:
    """What `Store.featurize` and `Store.featurize_missing` do (installed by `featstore`)."""

    def featurize_missing(self, store: Store, texts: Sequence[str], fingerprint: dict | None,
                          features: Sequence[str], model: str | None, progress: bool) -> int:
        return featurize_missing(store, list(texts), fingerprint, features, progress=progress,
                                 model=model)

    def featurize_missing_pairs(self, store: Store, pairs: Sequence[tuple[str, str]],
                                encoder_fingerprint: dict, features: Sequence[str],
                                progress: bool) -> int:
        return featurize_missing_pairs(store, list(pairs), encoder_fingerprint, features,
                                       progress=progress)

    def featurize_sources(self, store: Store, texts: Sequence[str],
                          needs: Sequence[tuple[dict, Sequence[str]]], progress: bool,
                          laser_dir: str | None) -> int:
        return featurize_sources(store, texts, needs, progress=progress, laser_dir=laser_dir)

    def encode(self, store: Store, texts: Any, pool: str | None, layers: Any,
               normalize: bool | None, encoder: str | None, progress: bool) -> Any:
        return encode_texts(store, texts, pool=pool, layers=layers, normalize=normalize,
                      encoder=encoder, progress=progress)

    def featurize_data(self, store: Store, data: Any, name: str | None, text_col: str | None,
                       model: str | None, progress: bool, replace: bool,
                       options: dict[str, Any]) -> dict[str, Any]:
        opts = self._options(store, model, options)
        if isinstance(data, str | os.PathLike) and Path(data).is_file():
            return featurize_file(data, store.root, opts, name=name, text_col=text_col,
                                  progress=progress, warn=quiet, replace=replace).to_dict()
        if isinstance(data, str | os.PathLike):
            raise FeatstoreError(f"{data} is not a file; pass a corpus file, a DataFrame or a "
                                 "list of texts")
        if isinstance(data, pd.DataFrame):
            frame = data
        else:
            texts = list(data)
            if not all(isinstance(t, str) for t in texts):
                raise FeatstoreError("featurize takes a corpus file, a DataFrame or a list of "
                                     "texts")
            if name is None:
                return featurize_texts(texts, store.root, opts, progress=progress,
                                       warn=quiet).to_dict()
            frame = pd.DataFrame({"text": texts})
        if name is None:
            raise FeatstoreError("a DataFrame is recorded as a dataset: pass name=")
        with tempfile.TemporaryDirectory(prefix="featstore-frame-") as tmp:
            path = Path(tmp) / f"{name}.parquet"
            try:
                frame.to_parquet(path, index=False)
            except (ValueError, TypeError, ArrowException) as exc:
                raise FeatstoreError(f"the DataFrame cannot be stored as a table ({exc})"
                                     ) from None
            return featurize_corpus(path, store.root, opts, name=name, text_col=text_col,
                                    progress=progress, warn=quiet, replace=replace,
                                    source=DATAFRAME_SOURCE).to_dict()

    @staticmethod
    def _options(store: Store, model: str | None, options: dict[str, Any]) -> FeaturizeOptions:
        fields = set(FeaturizeOptions.__dataclass_fields__)
        unknown = sorted(set(options) - fields)
        if unknown:
            raise FeatstoreError(f"unknown featurize option(s) {', '.join(unknown)}; choose "
                                 f"from {', '.join(sorted(fields - {'model'}))}")
        if model is None and store.has_encoder() and not options:
            return options_for_store(store, None)
        return replace(FeaturizeOptions(model=model, laser=False), **options)
