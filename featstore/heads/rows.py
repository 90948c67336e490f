"""What a head is given as data: a dataset name in the store, a DataFrame with a `_key` (or
`text`) column, or a list of texts; turned into text keys and, when needed, label values."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from featstore.heads.errors import HeadError
from featstore.heads.labels import check_label_values, label_column
from featstore.store import KEY_COLUMN, Store, StoreError, clean_text, open_store, text_key

Data = str | pd.DataFrame | Sequence[str]


def keys_and_labels(store: Store, data: Data, y: Any, label_col: str | None,
                    need_labels: bool) -> tuple[list[str], pd.Series | None, str]:
    """Keys, label values (None when not needed and not given) and a name for messages."""
    if isinstance(data, str):
        df = store.dataset(data)
        where = f"dataset {data!r}"
    elif isinstance(data, pd.DataFrame):
        df, where = data, "the given rows"
        if KEY_COLUMN not in df.columns:
            if "text" not in df.columns:
                raise HeadError(f"rows need a {KEY_COLUMN!r} or 'text' column "
                                f"(columns: {', '.join(map(str, df.columns))})")
            df = df.assign(**{KEY_COLUMN: text_keys(df["text"].tolist(), "the given rows")})
    else:
        texts = list(data)
        if not all(isinstance(t, str) for t in texts):
            raise HeadError("data must be a dataset name, a DataFrame, or a list of texts")
        df = pd.DataFrame({KEY_COLUMN: text_keys(texts, "the given texts")})
        where = "the given texts"
    if not len(df):
        raise HeadError(f"{where} has no rows")
    keys = df[KEY_COLUMN].astype(str).tolist()
    if y is not None:
        labels = pd.Series(list(y) if not isinstance(y, pd.Series) else y.tolist())
        if len(labels) != len(keys):
            raise HeadError(f"{where} has {len(keys)} rows but {len(labels)} labels")
        return keys, labels, where
    if not need_labels:
        return keys, None, where
    col = label_column(df, label_col, where)
    labels = df[col].reset_index(drop=True)
    check_label_values(labels, col, where)
    return keys, labels, where


def text_keys(values: Sequence[object], where: str) -> list[str]:
    """Keys of given texts. An empty or missing text is refused: it has no vectors, and
    featurize never stores any for it."""
    keys = []
    for i, value in enumerate(values):
        text = clean_text(value)
        if text is None:
            raise HeadError(f"{where}: text {i + 1} is empty or missing, and an empty text has "
                            "no vectors; drop it or give it a text")
        keys.append(text_key(text))
    return keys


def texts_of(data: Data) -> list[str] | None:
    """The raw texts given (a list, array or Series of texts, or a DataFrame's `text` column),
    so that those the store lacks can be featurized; None for a dataset name or keys only."""
    if isinstance(data, str):
        return None
    if isinstance(data, pd.DataFrame):
        return data["text"].astype(str).tolist() if "text" in data.columns else None
    texts = list(data)
    return texts if all(isinstance(t, str) for t in texts) else None


def store_from(param: str | Path | Store | None) -> Store:
    """An estimator's `store` parameter (a path or an open store) as an open store."""
    if isinstance(param, Store):
        return param
    if param is None:
        raise HeadError("no store: pass store=PATH (or an open store) to the estimator")
    try:
        return open_store(param)
    except StoreError as exc:
        raise HeadError(f"store={param!r}: {exc}") from None


def store_and_data(X: Any, rest: tuple, param: str | Path | Store | None
                   ) -> tuple[Store, Any, tuple]:
    """(store, data, remaining arguments) of an estimator call: `X` may be an open store
    followed by the data (`fit(store, data, y)`); otherwise the store is the estimator's
    `store` parameter."""
    if isinstance(X, Store):
        if not rest:
            raise HeadError("after a store, pass the data: fit(store, data, y)")
        return X, rest[0], rest[1:]
    return store_from(param), X, rest
