"""What a pair head is given as data, turned into keys: a pair dataset in the store (its table
holds each row's pair key and both texts' keys), a DataFrame (with those key columns, or with
the two text columns), or a list of (a, b) tuples; and the labels when needed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from featstore.heads.errors import HeadError
from featstore.heads.labels import LABEL_COLUMNS, check_label_values, label_column
from featstore.heads.splits import SPLIT_COLUMN
from featstore.store import KEY_COLUMN, PAIR_KEY_COLUMNS, Store, clean_text, pair_key, text_key

DEFAULT_PAIR_COLUMNS = ("text_a", "text_b")  # what lone pairs (tuples, --text-a/--text-b) are


@dataclass
class PairRows:
    """The pairs of some data: both texts' keys and the pair's key, per row; the texts when they
    were given (so those the store lacks can be encoded); the two columns they came from."""

    keys_a: list[str]
    keys_b: list[str]
    pair_keys: list[str]
    where: str
    columns: tuple[str, str]
    texts: list[tuple[str, str]] | None = None
    labels: pd.Series | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.keys_a)

    def swapped(self) -> PairRows:
        """The same pairs in the other order, (b, a)."""
        return PairRows(self.keys_b, self.keys_a,
                        [pair_key(b, a) for a, b in zip(self.keys_a, self.keys_b, strict=True)],
                        self.where, (self.columns[1], self.columns[0]),
                        None if self.texts is None else [(b, a) for a, b in self.texts],
                        self.labels)

    def take(self, idx: np.ndarray) -> PairRows:
        pick = idx.tolist()
        return PairRows([self.keys_a[i] for i in pick], [self.keys_b[i] for i in pick],
                        [self.pair_keys[i] for i in pick], self.where, self.columns,
                        None if self.texts is None else [self.texts[i] for i in pick],
                        None if self.labels is None else
                        self.labels.iloc[idx].reset_index(drop=True))

    def concat(self, other: PairRows) -> PairRows:
        texts = None if self.texts is None or other.texts is None else self.texts + other.texts
        labels = None if self.labels is None or other.labels is None else \
            pd.concat([self.labels, other.labels], ignore_index=True)
        return PairRows(self.keys_a + other.keys_a, self.keys_b + other.keys_b,
                        self.pair_keys + other.pair_keys, self.where, self.columns, texts,
                        labels)


def pair_columns_of(df: pd.DataFrame, pair_cols: Sequence[str] | None,
                    label_col: str | None) -> tuple[str, str] | None:
    """The two text columns of a frame: `pair_cols`, else its only two columns besides keys,
    the label and the split; None when that does not name two."""
    if pair_cols is not None:
        return (str(pair_cols[0]), str(pair_cols[1]))
    skip = {KEY_COLUMN, *PAIR_KEY_COLUMNS, SPLIT_COLUMN, *LABEL_COLUMNS,
            *([label_col] if label_col else [])}
    rest = [c for c in df.columns if c not in skip]
    return (str(rest[0]), str(rest[1])) if len(rest) == 2 else None


def _keys_of_texts(a: Sequence[object], b: Sequence[object], where: str
                   ) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    keys_a, keys_b, texts = [], [], []
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        ta, tb = clean_text(x), clean_text(y)
        if ta is None or tb is None:
            side = "first" if ta is None else "second"
            raise HeadError(f"{where}: pair {i + 1} has no {side} text; a pair needs both "
                            "texts (fill it or drop it)")
        keys_a.append(text_key(ta))
        keys_b.append(text_key(tb))
        texts.append((ta, tb))
    return keys_a, keys_b, texts


def pair_rows(store: Store, data: Any, y: Any = None, label_col: str | None = None,
              pair_cols: Sequence[str] | None = None, need_labels: bool = False) -> PairRows:
    """Keys (and labels: `y`, else the label column when `need_labels`) of pair data; see the
    module docstring."""
    df: pd.DataFrame | None = None
    if isinstance(data, str):
        entry = store.manifest.datasets.get(data)
        df = store.dataset(data)
        where = f"dataset {data!r}"
        if entry is None or not entry.pair_columns:
            raise HeadError(f"{where} holds texts, not pairs; featurize its corpus with "
                            "--pair-cols A B for a pair head")
        out = PairRows(df[PAIR_KEY_COLUMNS[0]].astype(str).tolist(),
                       df[PAIR_KEY_COLUMNS[1]].astype(str).tolist(),
                       df[KEY_COLUMN].astype(str).tolist(), where,
                       (entry.pair_columns[0], entry.pair_columns[1]))
    elif isinstance(data, pd.DataFrame):
        df, where = data.reset_index(drop=True), "the given pairs"
        cols = pair_columns_of(df, pair_cols, label_col)
        has_texts = cols is not None and all(c in df.columns for c in cols)
        if all(c in df.columns for c in PAIR_KEY_COLUMNS):  # rows of a pair dataset's table
            ka = df[PAIR_KEY_COLUMNS[0]].astype(str).tolist()
            kb = df[PAIR_KEY_COLUMNS[1]].astype(str).tolist()
            pk = df[KEY_COLUMN].astype(str).tolist() if KEY_COLUMN in df.columns else \
                [pair_key(a, b) for a, b in zip(ka, kb, strict=True)]
            texts = None
            if has_texts and cols is not None:
                texts = [(clean_text(a) or "", clean_text(b) or "")
                         for a, b in zip(df[cols[0]].tolist(), df[cols[1]].tolist(),
                                         strict=True)]
            out = PairRows(ka, kb, pk, where, cols or DEFAULT_PAIR_COLUMNS, texts)
        elif has_texts and cols is not None:
            ka, kb, texts = _keys_of_texts(df[cols[0]].tolist(), df[cols[1]].tolist(), where)
            out = PairRows(ka, kb, [pair_key(a, b) for a, b in zip(ka, kb, strict=True)], where,
                           cols, texts)
        else:
            wanted = f"columns {cols[0]!r} and {cols[1]!r}" if cols else "two text columns"
            raise HeadError(f"{where} need {wanted} holding each pair's texts (columns: "
                            f"{', '.join(map(str, df.columns))}); name them with pair_cols=")
    else:
        try:
            items = [tuple(p) for p in data]
        except TypeError:
            items = []
        if not items or not all(len(p) == 2 and all(isinstance(t, str) for t in p)
                                for p in items):
            raise HeadError("pair data must be a pair dataset's name, a DataFrame, or a list of "
                            "(a, b) tuples of texts")
        where = "the given pairs"
        ka, kb, texts = _keys_of_texts([p[0] for p in items], [p[1] for p in items], where)
        out = PairRows(ka, kb, [pair_key(a, b) for a, b in zip(ka, kb, strict=True)], where,
                       DEFAULT_PAIR_COLUMNS, texts)
    if not len(out):
        raise HeadError(f"{out.where} has no pairs")
    if y is not None:
        labels = pd.Series(list(y) if not isinstance(y, pd.Series) else y.tolist())
        if len(labels) != len(out):
            raise HeadError(f"{out.where} has {len(out)} pairs but {len(labels)} labels")
        out.labels = labels
    elif need_labels:
        if df is None:
            raise HeadError(f"{out.where} carry no labels; pass y=")
        col = label_column(df, label_col, out.where)
        out.labels = df[col].reset_index(drop=True)
        check_label_values(out.labels, col, out.where)
    return out
