"""Predictions as a table: rows from a dataset, a file or plain texts, any text the store lacks
encoded first with the head's own encoder, then each row with its other columns (gold labels
included), the prediction and class probabilities (all of them, or the top k)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from featstore.featurize.corpus import open_corpus
from featstore.heads.ensemble import HeadEnsemble
from featstore.heads.errors import HeadError
from featstore.heads.estimator import HeadEstimator
from featstore.heads.inputs import find_by_fingerprint
from featstore.services.featurizing import Say, featurize_missing
from featstore.store import KEY_COLUMN, Store, clean_text, keys_for

TEXT = "text"


def input_rows(store: Store, value: str | None = None, text_col: str | None = None,
               texts: Sequence[str] = ()) -> pd.DataFrame:
    """A `text` column plus every other column of the input: a dataset in the store, a corpus
    file (rows without text dropped), and/or plain texts (inline, or one per line on stdin)."""
    frames = []
    if value is not None:
        frames.append(_rows_of(store, value, text_col))
    if texts:
        kept = [t for t in texts if clean_text(t) is not None]
        if not kept:
            raise HeadError("the given texts are all empty")
        frames.append(pd.DataFrame({TEXT: kept}))
    if not frames:
        raise HeadError("nothing to predict: name a dataset or file, pass --text, or pipe "
                        "texts on stdin with INPUT -")
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _rows_of(store: Store, value: str, text_col: str | None) -> pd.DataFrame:
    if value in store.manifest.datasets:
        col = store.manifest.datasets[value].text_column
        df = store.dataset(value).drop(columns=[KEY_COLUMN])
    else:
        path = Path(value)
        if not path.is_file():
            raise HeadError(f"{value!r} is neither a dataset in store {store.root} nor a file")
        corpus = open_corpus(path, text_col)
        col = corpus.text_column
        df = pd.concat(list(corpus.chunks()), ignore_index=True)
        df = df[[clean_text(v) is not None for v in df[col].tolist()]]
        if df.empty:
            raise HeadError(f"{path} has no texts in column {col!r}")
    df = df.rename(columns={col: TEXT}).reset_index(drop=True)
    df[TEXT] = df[TEXT].astype(str)
    return df[[TEXT, *(c for c in df.columns if c != TEXT)]]


def predict_frame(store: Store, head: HeadEstimator | HeadEnsemble,
                  rows: pd.DataFrame | Sequence[str], progress: bool = False,
                  say: Say | None = None, name: str = "the head",
                  top_k: int | None = None) -> pd.DataFrame:
    """The rows (texts, or a frame with a `text` column) with `prediction` and, for classifiers,
    `p_CLASS` per class, or with `top_k`, `label_1, p_1, ... label_K, p_K`. Texts the store
    lacks are encoded and stored first, with the head's own encoder (which the store must
    hold)."""
    head.check_fitted()
    out = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame({TEXT: list(rows)})
    if "prediction" in out.columns:
        out = out.rename(columns={"prediction": "prediction_given"})
    texts = out[TEXT].astype(str).tolist()
    needs: dict[str, tuple[dict, list[str]]] = {}  # per encoder: the features any part reads
    for layout in head.layouts_:
        fp, feats = needs.setdefault(json.dumps(layout.encoder_fingerprint, sort_keys=True),
                                     (layout.encoder_fingerprint, []))
        feats.extend(f for f in layout.features if f not in feats)
    for fp, feats in needs.values():
        find_by_fingerprint(store, fp, name)
        featurize_missing(store, texts, fp, feats, progress=progress, say=say)
    keys = pd.DataFrame({KEY_COLUMN: keys_for(texts)})
    if head.task == "regression":
        out["prediction"] = head.raw_output(store, keys)
        return out
    proba = np.asarray(head.raw_output(store, keys), dtype=np.float64)
    classes = list(head.labels_.classes)
    out["prediction"] = head.labels_.decode(proba.argmax(axis=1))
    if top_k is None:
        for i, c in enumerate(classes):
            out[f"p_{c}"] = proba[:, i].round(6)
        return out
    order = np.argsort(-proba, axis=1, kind="stable")[:, :min(top_k, len(classes))]
    for j in range(order.shape[1]):
        out[f"label_{j + 1}"] = [classes[i] for i in order[:, j]]
        out[f"p_{j + 1}"] = proba[np.arange(len(proba)), order[:, j]].round(6)
    return out
