"""Predictions as a table: texts from a dataset or a file, any the store lacks encoded first
with the head's own encoder, then one row per text with its label and class probabilities."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from featstore.featurize.corpus import open_corpus
from featstore.heads.errors import HeadError
from featstore.heads.estimator import HeadEstimator
from featstore.heads.inputs import find_by_fingerprint
from featstore.services.featurizing import Say, featurize_missing
from featstore.store import KEY_COLUMN, Store, clean_text, keys_for


def input_texts(store: Store, value: str, text_col: str | None = None) -> list[str]:
    """The texts of a dataset in the store, or of a corpus file (rows without text dropped)."""
    if value in store.manifest.datasets:
        col = store.manifest.datasets[value].text_column
        return store.dataset(value)[col].astype(str).tolist()
    path = Path(value)
    if not path.is_file():
        raise HeadError(f"{value!r} is neither a dataset in store {store.root} nor a file")
    corpus = open_corpus(path, text_col)
    texts = [t for chunk in corpus.chunks() for v in chunk[corpus.text_column].tolist()
             if (t := clean_text(v)) is not None]
    if not texts:
        raise HeadError(f"{path} has no texts in column {corpus.text_column!r}")
    return texts


def predict_frame(store: Store, head: HeadEstimator, texts: list[str], progress: bool = False,
                  say: Say | None = None, name: str = "the head") -> pd.DataFrame:
    """text, prediction, and p_CLASS per class (classifiers); texts the store lacks are encoded
    and stored first, with the head's own encoder (which the store must hold)."""
    head.check_fitted()
    layout = head.inputs_.layout
    find_by_fingerprint(store, layout.encoder_fingerprint, name)
    featurize_missing(store, texts, layout.encoder_fingerprint, layout.features,
                      progress=progress, say=say)
    rows = pd.DataFrame({KEY_COLUMN: keys_for(texts)})
    out = pd.DataFrame({"text": texts})
    if head.task == "regression":
        out["prediction"] = head.raw_output(store, rows)
        return out
    proba = head.raw_output(store, rows)
    out["prediction"] = head.labels_.decode(proba.argmax(axis=1))
    for i, c in enumerate(head.labels_.classes):
        out[f"p_{c}"] = proba[:, i].round(6)
    return out
