"""Featurizing from Python: files into datasets, and whichever texts a store still lacks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from featstore.featurize.driver import FeaturizeSummary, featurize_corpus, featurize_texts
from featstore.featurize.options import FeaturizeOptions
from featstore.store import Store, keys_for

Say = Callable[[str], None]


def options_for_store(store: Store | None, model: str | None = None,
                      tokens: bool = False) -> FeaturizeOptions:
    """Options that reproduce the store's encoder (by `model` when it holds several), else a
    fresh encoder `model` (the bundled default when None); LASER off."""
    if store is not None and any(e.fingerprint.get("kind") == "encoder"
                                 for e in store.manifest.encoders.values()):
        enc = store.resolve_encoder(model, kind="encoder")
        return FeaturizeOptions.from_fingerprint(store.encoder_entry(enc).fingerprint,
                                                 tokens=tokens)
    return FeaturizeOptions(model=model, tokens=tokens, laser=False)


def featurize_file(corpus: str | Path, store_path: str | Path | None, options: FeaturizeOptions,
                   name: str | None = None, text_col: str | None = None,
                   progress: bool = True, warn: Say | None = None,
                   replace: bool = False) -> FeaturizeSummary:
    """Featurize a corpus file into a store as dataset `name` (default: the file's stem); a
    dataset of that name made from another file is replaced only with `replace`."""
    return featurize_corpus(corpus, store_path, options, name=name, text_col=text_col,
                            progress=progress, warn=warn, replace=replace)


def featurize_missing(store: Store, texts: Sequence[str], fingerprint: dict,
                      features: Sequence[str], progress: bool = False,
                      say: Say | None = None) -> int:
    """Encode and store those of `texts` that lack `features` for the encoder with this
    fingerprint; `store` is refreshed to see them. Returns how many texts were encoded."""
    enc = store.find_encoder(fingerprint)
    keys = keys_for(texts)
    lacking = ([True] * len(keys) if enc is None
               else (~store.has(enc, keys, list(features))).tolist())
    new = list(dict.fromkeys(t for t, m in zip(texts, lacking, strict=True) if m))
    if not new:
        return 0
    if say is not None:
        say(f"encoding {len(new)} text(s) not yet in the store")
    opts = FeaturizeOptions.from_fingerprint(fingerprint, tokens="tokens" in features)
    featurize_texts(new, store.root, opts, progress=progress)
    store.refresh()
    return len(new)
