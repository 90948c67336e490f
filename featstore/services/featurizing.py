"""Featurizing from Python: files into datasets, and whichever texts a store still lacks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from featstore.featurize.driver import (
    FeaturizeSummary,
    featurize_corpus,
    featurize_pairs,
    featurize_texts,
)
from featstore.featurize.model_names import DEFAULT_MODEL
from featstore.featurize.options import FeaturizeOptions
from featstore.store import FeatstoreError, Store, clean_text, keys_for, pair_key, short_model_name

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
    lacking = _lacking_per_key(store, enc, keys, features)
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
    featurize_texts(new, store.root, opts, progress=progress, warn=say or quiet,
                    announce=f"encoding {len(new)} text(s) not yet in the store with "
                             f"{short_model_name(opts.model or DEFAULT_MODEL)}")
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
    lacking = _lacking_per_key(store, cross, keys, features)
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
    featurize_pairs(new, store.root, opts, progress=progress, warn=say or quiet,
                    announce=f"encoding {len(new)} pair(s) not yet in the store")
    store.refresh()
    return len(new)


def _lacking_per_key(store: Store, source: str | None, keys: list[str],
                     features: Sequence[str]) -> list[bool]:
    """Per key, whether `source` (None: not in the store yet) lacks any of `features`."""
    if source is None:
        return [True] * len(keys)
    return (~store.has(source, keys, list(features))).tolist()


def _fingerprint_of(store: Store, model: str | None) -> dict:
    return store.encoder_entry(store.resolve_encoder(model, kind="encoder")).fingerprint


def quiet(message: str) -> None:
    """Notebook calls stay quiet unless asked (`progress=True` shows the bar)."""
