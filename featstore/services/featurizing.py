"""Featurizing from Python: files into datasets, and whichever texts a store still lacks."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
from pyarrow import ArrowException

from featstore.featurize.driver import (
    FeaturizeSummary,
    featurize_corpus,
    featurize_pairs,
    featurize_texts,
)
from featstore.featurize.options import FeaturizeOptions
from featstore.store import FeatstoreError, Store, clean_text, keys_for, pair_key

Say = Callable[[str], None]


def options_for_store(store: Store | None, model: str | None = None,
                      tokens: bool = False) -> FeaturizeOptions:
    """Options that reproduce the store's encoder (by `model` when it holds several), else a
    fresh encoder `model` (the bundled default when None); LASER off."""
    if store is not None and store.has_encoder():
        enc = store.resolve_encoder(model, kind="encoder")
        return FeaturizeOptions.from_fingerprint(store.encoder_entry(enc).fingerprint,
                                                 tokens=tokens)
    return FeaturizeOptions(model=model, tokens=tokens, laser=False)


def featurize_file(corpus: str | Path, store_path: str | Path | None, options: FeaturizeOptions,
                   name: str | None = None, text_col: str | None = None,
                   progress: bool = True, warn: Say | None = None,
                   replace: bool = False, announce: str | None = None,
                   pair_cols: Sequence[str] | None = None) -> FeaturizeSummary:
    """Featurize a corpus file into a store as dataset `name` (default: the file's stem); a
    dataset of that name made from another file is replaced only with `replace`. `announce`
    is said through `warn` once the corpus and model check out. `pair_cols`: the two text
    columns of a pair corpus (with `options.cross`, each pair is also encoded jointly)."""
    return featurize_corpus(corpus, store_path, options, name=name, text_col=text_col,
                            progress=progress, warn=warn, replace=replace, announce=announce,
                            pair_cols=pair_cols)


def featurize_missing(store: Store, texts: Sequence[str], fingerprint: dict | None,
                      features: Sequence[str], progress: bool = False,
                      say: Say | None = None, model: str | None = None) -> int:
    """Encode and store those of `texts` that lack `features` for the encoder with this
    fingerprint (None: the store's encoder, by `model` when it holds several; in an empty store,
    the encoder `model` names); `store` is refreshed to see them. Returns how many were encoded.
    """
    if fingerprint is None and store.has_encoder():
        fingerprint = _fingerprint_of(store, model)
    enc = store.find_encoder(fingerprint) if fingerprint is not None else None
    keys = keys_for(texts)
    lacking = ([True] * len(keys) if enc is None
               else (~store.has(enc, keys, list(features))).tolist())
    new = list(dict.fromkeys(t for t, m in zip(texts, lacking, strict=True)
                             if m and clean_text(t) is not None))
    if not new:
        return 0
    tokens = "tokens" in features
    # Encoding on the side of a read (predict, an estimator's fit, n_jobs=2): another writer
    # is waited for, never a reason to fail.
    if fingerprint is None:
        opts = FeaturizeOptions(model=model, tokens=tokens, laser=False, wait=True)
    else:
        try:
            opts = FeaturizeOptions.from_fingerprint(fingerprint, tokens=tokens, wait=True)
        except (KeyError, TypeError):
            raise FeatstoreError(f"{len(new)} text(s) are not featurized, and the encoder's "
                                 "fingerprint names no model featstore can load; run "
                                 "featurize on them") from None
    featurize_texts(new, store.root, opts, progress=progress, warn=say or _quiet,
                    announce=f"encoding {len(new)} text(s) not yet in the store")
    store.refresh()
    return len(new)


def featurize_missing_pairs(store: Store, pairs: Sequence[tuple[str, str]],
                            encoder_fingerprint: dict, features: Sequence[str],
                            progress: bool = False, say: Say | None = None) -> int:
    """Encode jointly those of `pairs` whose `features` the cross source of the encoder with
    this fingerprint lacks (with their texts, where the encoder lacks them); `store` is
    refreshed to see them. Returns how many pairs were encoded."""
    cross = store.find_derived("cross", encoder_fingerprint)
    keys = [pair_key(*keys_for(p)) for p in pairs]
    lacking = ([True] * len(keys) if cross is None
               else (~store.has(cross, keys, list(features))).tolist())
    new = list(dict.fromkeys(tuple(p) for p, m in zip(pairs, lacking, strict=True)
                             if m and clean_text(p[0]) is not None
                             and clean_text(p[1]) is not None))
    if not new:
        return 0
    try:
        opts = FeaturizeOptions.from_fingerprint(encoder_fingerprint, wait=True, cross=True)
    except (KeyError, TypeError):
        raise FeatstoreError(f"{len(new)} pair(s) are not encoded jointly, and the encoder's "
                             "fingerprint names no model featstore can load; run featurize "
                             "--pair-cols A B --cross on them") from None
    featurize_pairs(new, store.root, opts, progress=progress, warn=say or _quiet,
                    announce=f"encoding {len(new)} pair(s) not yet in the store")
    store.refresh()
    return len(new)


def _fingerprint_of(store: Store, model: str | None) -> dict:
    return store.encoder_entry(store.resolve_encoder(model, kind="encoder")).fingerprint


def _quiet(message: str) -> None:
    """Notebook calls stay quiet unless asked (`progress=True` shows the bar)."""


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

    def featurize_data(self, store: Store, data: Any, name: str | None, text_col: str | None,
                       model: str | None, progress: bool, replace: bool,
                       options: dict[str, Any]) -> dict[str, Any]:
        opts = self._options(store, model, options)
        if isinstance(data, str | os.PathLike) and Path(data).is_file():
            return featurize_file(data, store.root, opts, name=name, text_col=text_col,
                                  progress=progress, warn=_quiet, replace=replace).to_dict()
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
                                       warn=_quiet).to_dict()
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
                                    progress=progress, warn=_quiet, replace=replace,
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
