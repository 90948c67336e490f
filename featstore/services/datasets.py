"""Datasets named by what a user has at hand: a dataset already in the store, or a corpus file
that is featurized first with the store's encoder; and small tables of rows read as they are
(a --labels file, a file of sequence rows to predict)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd

from featstore.featurize.corpus import read_rows
from featstore.featurize.errors import CorpusError
from featstore.heads.errors import HeadError
from featstore.services.featurizing import Say, featurize_file, options_for_store
from featstore.services.preflight import dataset_name
from featstore.store import default_store_path, open_store


def dataset_for(store_path: str | Path | None, value: str | None, model: str | None = None,
                tokens: bool = False, progress: bool = True, say: Say | None = None,
                pair_cols: Sequence[str] | None = None) -> str | None:
    """A dataset name in the store, featurizing a corpus file first when that is what it is
    (with `pair_cols`, a pair corpus)."""
    if value is None:
        return None
    root = default_store_path(store_path)
    store = open_store(root) if (root / "manifest.json").exists() else None
    name, is_file = dataset_name(root, store, value)
    if not is_file:
        return name
    path = Path(value)
    options = replace(options_for_store(store, model, tokens), wait=True)  # a side write
    featurize_file(path, root, options, name=name, progress=progress, warn=say,
                   announce=None if say is None else
                   f"featurizing {path} into {root} as dataset {name!r}", pair_cols=pair_cols)
    return name


def read_rows_file(path: str | Path, what: str) -> pd.DataFrame:
    """A small table file (CSV, TSV, JSONL, Parquet), read as featurize reads a corpus (CSV
    cells as text), so a group or order value means the same here as in a dataset."""
    p = Path(path)
    if not p.is_file():
        raise HeadError(f"{what} {str(path)!r} is not a file")
    suffix = p.suffix.lower()
    fmt = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
           ".pq": "parquet", ".tsv": "tsv"}.get(suffix, "csv")
    try:
        return read_rows(p, fmt)
    except CorpusError as exc:
        raise HeadError(f"{what} {exc}") from None
