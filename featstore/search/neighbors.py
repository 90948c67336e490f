"""Nearest stored texts of a dataset: exact search, or the approximate index the store keeps.

The corpus is the dataset's distinct texts (keys), in the order of their first row. Exact
search is the default and the reference; from `APPROX_MIN_ROWS` texts on (`method="auto"`), or
when asked (`"approx"`), an HNSW index is used instead, built once per (encoder fingerprint,
layout, dataset) and kept in the store as a checksummed derived file (docs/STORE.md).

An index is never used stale: it records which stored rows (shard file and row, per feature)
its vectors came from. When the dataset gained texts, they are added to the graph and the index
is committed again; when any indexed text left the dataset or its stored row changed (`repair`
dropped a shard and the text was encoded again), the index is built anew. A damaged index file
is refused in one line, never rebuilt behind the user's back: `featstore repair` drops it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from featstore.heads.errors import HeadError
from featstore.search.approximate import KIND, HnswIndex, library_version
from featstore.search.exact import exact_search
from featstore.search.layouts import SearchLayout
from featstore.store import KEY_COLUMN, Store, StoreError
from featstore.store.errors import DamagedIndexError
from featstore.store.hashing import sha256_bytes

METHODS = ("auto", "exact", "approx")
APPROX_MIN_ROWS = 100_000  # below it exact search answers a batch of queries in about a second
MAX_ID = 128

Say = Callable[[str], None]


def _silent(message: str) -> None:
    """Notebook calls stay quiet unless asked."""


@dataclass
class SearchCorpus:
    """A dataset's distinct texts: keys in first-row order, and each one's first row."""

    dataset: str
    table: pd.DataFrame
    text_column: str
    keys: list[str]
    first_row: np.ndarray
    position: dict[str, int] = field(repr=False, default_factory=dict)

    whole: bool = True  # every row of the dataset (only then may an index serve it)

    @classmethod
    def of(cls, store: Store, dataset: str, rows: pd.DataFrame | None = None) -> SearchCorpus:
        """The dataset's texts, or only those of `rows` (some of its rows, `_key` included)."""
        if dataset not in store.manifest.datasets:
            known = ", ".join(store.manifest.datasets) or "none"
            raise HeadError(f"store {store.root} has no dataset {dataset!r} (it has: {known})")
        table = store.dataset(dataset) if rows is None else rows.reset_index(drop=True)
        whole = rows is None or len(rows) == store.manifest.datasets[dataset].rows
        col = store.manifest.datasets[dataset].text_column
        all_keys = table[KEY_COLUMN].tolist()
        position: dict[str, int] = {}
        first: list[int] = []
        for row, key in enumerate(all_keys):
            if key not in position:
                position[key] = len(first)
                first.append(row)
        return cls(dataset, table, col, list(position), np.asarray(first, dtype=np.int64),
                   position, whole)


def index_id(dataset: str, layout: SearchLayout) -> str:
    """The store's name for the index of a dataset under a layout."""
    name = f"{dataset}.{layout.digest()}"
    if len(name) <= MAX_ID:
        return name
    return f"{dataset[:MAX_ID - 23]}-{sha256_bytes(dataset.encode())[:8]}.{layout.digest()}"


def locations_digest(store: Store, layout: SearchLayout, keys: list[str]) -> str:
    """A digest of where each key's stored rows are (shard file and row, per feature): equal
    digests mean the same vectors, since committed shards never change."""
    import hashlib

    h = hashlib.sha256()
    entry = store.encoder_entry(layout.encoder_id)
    files = [s.file for s in entry.shards]
    for feature in layout.layout.features:
        idx = store.index(layout.encoder_id, feature)
        h.update(feature.encode() + b"\0")
        for key in keys:
            loc = idx.get(key)
            h.update(f"{key}:{files[loc.shard]}:{loc.row};".encode() if loc is not None
                     else f"{key}:-;".encode())
    return h.hexdigest()


@dataclass
class SearchReport:
    """How a search was answered (what `neighbors --json` and `audit` report)."""

    method: str  # "exact" or "approx"
    rows: int
    index: str | None = None
    index_status: str | None = None  # "used", "built", "updated (+N rows)", "in memory"
    ef_search: int | None = None
    recall: float | None = None
    library: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def line(self) -> str:
        if self.method == "exact":
            return f"exact search over {self.rows} texts"
        measured = "too few texts to measure recall" if self.recall is None else \
            f"recall@10 {self.recall:.3f} on held-out texts"
        return (f"approximate search ({self.library}, index {self.index} {self.index_status}; "
                f"efSearch {self.ef_search}, {measured}) over {self.rows} texts")


class NeighborSearch:
    """Search one dataset's texts under one layout; `prepare` settles the method (loading,
    updating or building the index), `search` answers query vectors."""

    def __init__(self, store: Store, dataset: str, layout: SearchLayout, method: str = "auto",
                 progress: bool = False, say: Say | None = None,
                 rows: pd.DataFrame | None = None) -> None:
        if method not in METHODS:
            raise HeadError(f"unknown search method {method!r}; choose one of: "
                            f"{', '.join(METHODS)}")
        self.store, self.layout, self.method = store, layout, method
        self.corpus = SearchCorpus.of(store, dataset, rows)
        layout.check(store, self.corpus.keys, f"dataset {dataset!r}")
        self.progress, self.say = progress, say or _silent
        self._vectors: np.ndarray | None = None
        self._index: HnswIndex | None = None
        self._index_to_corpus: np.ndarray | None = None
        self.report: SearchReport | None = None

    # -- the corpus ---------------------------------------------------------------------------
    @property
    def rows(self) -> int:
        return len(self.corpus.keys)

    def corpus_vectors(self) -> np.ndarray:
        """Every text's unit-length vector (float32, [texts, width]), read once."""
        if self._vectors is None:
            with progress_bar(self.rows, "reading vectors", self.progress) as bar:
                parts = []
                for block in self.layout.chunks(self.store, self.corpus.keys):
                    parts.append(block)
                    bar.update(len(block))
            self._vectors = np.concatenate(parts) if len(parts) > 1 else parts[0]
        return self._vectors

    # -- choosing and preparing the method ----------------------------------------------------
    def prepare(self) -> SearchReport:
        if self.report is not None:
            return self.report
        approx = self.method == "approx" or (self.method == "auto"
                                             and self.rows >= APPROX_MIN_ROWS)
        if approx and not self.corpus.whole:
            self.say(f"searching some rows of dataset {self.corpus.dataset!r} exactly: an "
                     "index serves a whole dataset (give the rows their own dataset to index "
                     "them)")
            approx = False
        if not approx or self.rows < 2:
            self.corpus_vectors()
            self.report = SearchReport("exact", self.rows)
            return self.report
        self.report = self._prepare_index()
        return self.report

    def _prepare_index(self) -> SearchReport:
        name = index_id(self.corpus.dataset, self.layout)
        identity = self.layout.identity()
        entry = self.store.index_entry(name)
        index, keys, status = None, None, "used"
        if entry is not None and entry.dataset == self.corpus.dataset and \
                entry.meta.get("layout") == identity:
            keys, blob, _ = self.store.read_index(name)  # damage: one line, nothing rebuilt
            fresh = entry.meta.get("rows_digest") == locations_digest(self.store, self.layout,
                                                                     keys)
            wanted = set(self.corpus.keys)
            if fresh and all(k in wanted for k in keys):
                index = self._load(name, blob, entry.meta, len(keys))
            else:
                self.say(f"index {name} no longer matches dataset {self.corpus.dataset!r} "
                         "(texts left it or their stored rows changed); building it again")
                keys = None
        if index is None or keys is None:
            self.say(f"building the approximate index of {self.rows} texts once; it is kept "
                     "in the store (--index exact skips it)")
            vectors = self.corpus_vectors()
            with progress_bar(self.rows, "indexing", self.progress) as bar:
                index, order = HnswIndex.build(vectors, bar.update)
            keys = [self.corpus.keys[i] for i in order.tolist()]
            status = self._commit(name, index, keys, "built")
        else:
            have = set(keys)
            new = [k for k in self.corpus.keys if k not in have]
            if new:  # texts added to the dataset join the graph; breadth and recall are kept
                with progress_bar(len(new), "indexing", self.progress) as bar:
                    index.add(self.layout.vectors(self.store, new), bar.update)
                keys = [*keys, *new]
                status = self._commit(name, index, keys, f"updated (+{len(new)} texts)")
        self._index = index
        self._index_to_corpus = np.fromiter((self.corpus.position[k] for k in keys),
                                            dtype=np.int64, count=len(keys))
        return SearchReport("approx", self.rows, name, status, index.ef_search, index.recall,
                            f"{KIND} (faiss {library_version()})")

    def _load(self, name: str, blob: np.ndarray, meta: dict, rows: int) -> HnswIndex:
        try:
            index = HnswIndex.from_bytes(blob, int(meta.get("ef_search", 64)),
                                         meta.get("recall"))
        except RuntimeError as exc:
            raise DamagedIndexError(f"index {name} cannot be read by faiss "
                                    f"({str(exc).splitlines()[0]}); run `featstore repair`"
                                    ) from None
        width = self.layout.width(self.store)
        if not hasattr(index.index, "hnsw") or index.rows != rows or \
                int(index.index.d) != width:  # type: ignore[attr-defined]
            raise DamagedIndexError(f"index {name} holds another graph than its manifest entry "
                                    "says; run `featstore repair`")
        return index

    def _commit(self, name: str, index: HnswIndex, keys: list[str], status: str) -> str:
        """Keep the index in the store (a side write that waits for another writer); on a
        store this process may not write, it stays in memory."""
        from featstore.store import StoreWriter

        if not os.access(self.store.root, os.W_OK):
            self.say(f"store {self.store.root} is read-only: the index was built in memory "
                     "and not kept")
            return "in memory"
        meta = {"layout": self.layout.identity(),
                "rows_digest": locations_digest(self.store, self.layout, keys),
                "ef_search": index.ef_search, "recall": index.recall,
                "width": self.layout.width(self.store), "metric": "inner product of unit rows"}
        try:
            with StoreWriter(self.store.root, wait=True) as writer:
                writer.commit_index(name, keys, index.to_bytes(), dataset=self.corpus.dataset,
                                    source=self.layout.encoder_id, kind=KIND, meta=meta,
                                    attrs={"library": "faiss",
                                           "library_version": library_version(), "kind": KIND})
        except StoreError as exc:  # a full disk, a read-only mount: search all the same
            self.say(f"the index was built in memory and not kept: {exc}")
            return "in memory"
        self.store.refresh()
        return status

    # -- searching ----------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, exclude: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, corpus positions) best first per query, -1 where fewer than k were found;
        `exclude[i]`: a corpus position query i may not return (itself), or -1."""
        if k < 1:
            raise HeadError(f"k must be at least 1, got {k}")
        report = self.prepare()
        k = min(k, self.rows - (1 if exclude is not None else 0))
        if k < 1:
            return (np.zeros((len(queries), 0), np.float32),
                    np.zeros((len(queries), 0), np.int64))
        many = self.progress and len(queries) > 1000
        if report.method == "exact":
            with progress_bar(len(queries), "searching", many) as bar:
                return exact_search(queries, self.corpus_vectors(), k, exclude, bar.update)
        assert self._index is not None and self._index_to_corpus is not None
        extra = 1 if exclude is not None else 0
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        found = np.full((len(queries), k), -1, dtype=np.int64)
        block = 4096
        with progress_bar(len(queries), "searching", many) as bar:
            for a in range(0, len(queries), block):
                s, rows = self._index.search(queries[a:a + block], k + extra)
                pos = np.where(rows >= 0, self._index_to_corpus[np.maximum(rows, 0)], -1)
                if exclude is not None:
                    drop = pos == exclude[a:a + block, None]
                    s = np.where(drop, -np.inf, s)
                    pos = np.where(drop, -1, pos)
                order = np.lexsort((np.where(pos < 0, np.iinfo(np.int64).max, pos), -s), axis=1)
                scores[a:a + len(s)] = np.take_along_axis(s, order, 1)[:, :k]
                found[a:a + len(s)] = np.take_along_axis(pos, order, 1)[:, :k]
                bar.update(len(s))
        return scores, found

    def frame(self, query_texts: list[str], query_vectors: np.ndarray, k: int) -> pd.DataFrame:
        """One row per (query, neighbour): query, rank, score, the neighbour's text, its first
        row in the dataset and that row's other columns."""
        scores, found = self.search(query_vectors, k)
        table, col = self.corpus.table, self.corpus.text_column
        others = [c for c in table.columns if c not in (KEY_COLUMN, col)]
        qi, rank = np.nonzero(found >= 0)
        pos = found[qi, rank]
        rows = self.corpus.first_row[pos]
        picked = table.iloc[rows]
        out = pd.DataFrame({"query": np.asarray(query_texts, dtype=object)[qi],
                            "rank": rank + 1, "score": np.round(scores[qi, rank], 6),
                            "text": picked[col].to_numpy(), "row": rows})
        for c in others:
            name = c if c not in out.columns else f"{c}_given"
            out[name] = picked[c].to_numpy()
        return out


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress_bar(total: int, desc: str, show: bool, unit: str = "text") -> Any:
    """A tqdm bar on stderr (nothing when not `show`), used as a context manager or closed."""
    if not show:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, unit=unit)
