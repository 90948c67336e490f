"""Predictions as a table, for a head of any unit: rows from a dataset, a file or plain texts,
any text the store lacks encoded first with the head's own encoder, then what the head's unit
prints per example (a text's row with its other columns, gold labels included; a sequence's
group), its prediction and class probabilities (all of them, or the top k)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from featstore.featurize.corpus import open_corpus
from featstore.heads.base import StoreHead
from featstore.heads.errors import HeadError
from featstore.heads.inputs import find_by_fingerprint
from featstore.heads.units import Unit, unit_of
from featstore.services.datasets import read_rows_file
from featstore.services.featurizing import Say, featurize_missing
from featstore.store import KEY_COLUMN, Store, clean_text

TEXT = "text"


def input_rows(store: Store, value: str | None = None, text_col: str | None = None,
               texts: Sequence[str] = ()) -> pd.DataFrame:
    """A `text` column plus every other column of the input: a dataset in the store, a corpus
    file (rows without text dropped), and/or plain texts (inline, or one per line on stdin)."""
    return _text_rows(store, value, text_col, texts)


def prediction_input(store: Store, unit: Unit, value: str | None = None,
                     text_col: str | None = None, texts: Sequence[str] = (),
                     name: str = "the head") -> pd.DataFrame:
    """The rows a head of `unit` predicts from: for texts, `input_rows`; for examples made of
    several rows (a sequence), a dataset or a file of rows as they are, never lone texts."""
    if unit.lone_texts:
        return input_rows(store, value, text_col, texts)
    if value is None or value == "-" or texts:
        raise HeadError(f"{name} is a {unit.name} head: name a dataset or a file of rows with "
                        "its group column (--text, stdin and --top-k are for per-text heads)")
    if value in store.manifest.datasets:
        return store.dataset(value)
    rows = read_rows_file(value, "input")
    for column in unit.text_columns:
        if column not in rows.columns:
            raise HeadError(f"{value} has no {column!r} column (columns: "
                            f"{', '.join(map(str, rows.columns))})")
    return rows


def _text_rows(store: Store, value: str | None, text_col: str | None, texts: Sequence[str]
               ) -> pd.DataFrame:
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


def predict_frame(store: Store, head: StoreHead, rows: pd.DataFrame | Sequence[str],
                  progress: bool = False, say: Say | None = None, name: str = "the head",
                  top_k: int | None = None) -> pd.DataFrame:
    """What the head's unit prints per example of `rows` (texts, or a frame with a `text`
    column; a sequence head's rows): `prediction` and, for classifiers, `p_CLASS` per class,
    or with `top_k`, `label_1, p_1, ... label_K, p_K`. Texts the store lacks are encoded and
    stored first, with the head's own encoder (which the store must hold)."""
    head.check_fitted()
    out = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame({TEXT: list(rows)})
    if "prediction" in out.columns:
        out = out.rename(columns={"prediction": "prediction_given"})
    needs: dict[str, tuple[dict, list[str]]] = {}  # per encoder: the features any part reads
    for layout in head.layouts_:  # type: ignore[attr-defined]
        fp, feats = needs.setdefault(json.dumps(layout.encoder_fingerprint, sort_keys=True),
                                     (layout.encoder_fingerprint, []))
        feats.extend(f for f in layout.features if f not in feats)
    unit = unit_of(head)
    texts = [] if KEY_COLUMN in out.columns else \
        [t for c in unit.text_columns if c in out.columns for t in out[c].astype(str)]
    for fp, feats in needs.values():  # rows with keys were read from the store: it holds them
        find_by_fingerprint(store, fp, name)
        if texts:
            featurize_missing(store, texts, fp, feats, progress=progress, say=say)
    return unit.prediction_table(store, head, out, top_k)
