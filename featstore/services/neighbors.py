"""Nearest stored texts for queries, as `featstore neighbors` and `store.neighbors` give them:
queries read from texts, stdin, a dataset or a file, checked before anything is written; texts
the store lacks featurized with the very encoder the layout reads (as `predict` does); the
answer from `featstore.search`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pandas as pd

from featstore.featurize.corpus import FORMATS, open_corpus
from featstore.heads.errors import HeadError
from featstore.search.layouts import SearchLayout
from featstore.search.neighbors import NeighborSearch, SearchReport
from featstore.services.featurizing import Say, featurize_missing
from featstore.services.predictions import stdin_texts
from featstore.store import Store, clean_text, keys_for


@dataclass
class Queries:
    """Query texts in input order, and how many input rows had no text."""

    texts: list[str]
    skipped: int = 0


def read_queries(store: Store, value: str | None = None, texts: Sequence[str] = (),
                 text_col: str | None = None, stdin: IO | None = None) -> Queries:
    """Queries from `--text` values and INPUT: `-` (one per line on stdin), a dataset of the
    store (its texts), a corpus file (.csv, .tsv, .parquet, .jsonl: its text column) or a text
    file (one query per line). A file that is not text (NUL bytes, invalid UTF-8) is refused
    naming its line."""
    given: list[str] = list(texts)
    if value == "-":
        if stdin is None:
            raise HeadError("INPUT - reads queries from stdin, and there is none")
        given += stdin_texts(stdin)
    elif value is not None and value in store.manifest.datasets:
        col = store.manifest.datasets[value].text_column
        given += store.dataset(value)[col].astype(str).tolist()
    elif value is not None:
        given += _file_queries(Path(value), text_col)
    elif not given:
        raise HeadError("no queries: pass --text TEXT, a file, a dataset, or - for one query "
                        "per line on stdin")
    kept = [t for t in given if clean_text(t) is not None]
    if not kept:
        raise HeadError("the queries are all empty")
    return Queries(kept, len(given) - len(kept))


def _file_queries(path: Path, text_col: str | None) -> list[str]:
    if not path.is_file():
        raise HeadError(f"{str(path)!r} is neither a dataset in the store nor a file")
    if path.suffix.lower() in FORMATS:
        corpus = open_corpus(path, text_col)
        return [str(v) for chunk in corpus.chunks() for v in chunk[corpus.text_column].tolist()
                if clean_text(v) is not None]
    if text_col is not None:
        raise HeadError(f"--text-col names a column of a corpus file; {path} is read as one "
                        "query per line")
    raw = path.read_bytes()
    out = []
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        if b"\0" in line:
            raise HeadError(f"{path} is not a text file (line {lineno} holds a NUL byte); give "
                            "one query per line in UTF-8, or a .csv/.tsv/.parquet/.jsonl corpus")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise HeadError(f"{path} is not a text file (line {lineno} is not valid UTF-8); "
                            "give one query per line in UTF-8") from None
        out.append(text.removeprefix("\ufeff") if lineno == 1 else text)
    if out and out[-1] == "":
        out.pop()
    return [t.removesuffix("\r") for t in out]


def find_neighbors(store: Store, queries: Sequence[str], dataset: str, k: int = 10, *,
                   pool: str = "mean", layers: int | Sequence[int] | None = None,
                   of: str | None = None, layer_start: int | None = None,
                   encoder: str | None = None, method: str = "auto", progress: bool = False,
                   say: Say | None = None) -> tuple[pd.DataFrame, SearchReport]:
    """The k nearest texts of `dataset` for each query (see `NeighborSearch.frame`) and how the
    search was answered. Everything is checked (k, the layout, the dataset and its vectors)
    before the index is built or a query featurized."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise HeadError(f"k must be an integer of at least 1, got {k!r}")
    texts = [t for t in queries if clean_text(t) is not None]
    if not texts:
        raise HeadError("the queries are all empty")
    layer_list = [layers] if isinstance(layers, int) else (list(layers) if layers else None)
    layout = SearchLayout.resolve(store, pool, layer_list, of, layer_start, encoder)
    search = NeighborSearch(store, dataset, layout, method, progress=progress, say=say)
    search.prepare()
    featurize_missing(store, texts, layout.layout.encoder_fingerprint, layout.layout.features,
                      progress=progress, say=say)
    vectors = layout.vectors(store, keys_for(texts))
    return search.frame(texts, vectors, k), search.prepare()


class StoreSearcher:
    """What `Store.neighbors` does (installed by `featstore`)."""

    def neighbors(self, store: Store, queries: Sequence[str], dataset: str, k: int,
                  options: dict[str, Any]) -> pd.DataFrame:
        return find_neighbors(store, queries, dataset, k, **options)[0]
