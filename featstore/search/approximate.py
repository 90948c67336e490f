"""The approximate index: FAISS's HNSW graph over unit-length float32 rows, inner product
(= cosine). Chosen by measurement over hnswlib, usearch and FAISS's IVF (bench/neighbors.py,
README): FAISS HNSW reached the highest recall at the same query time, builds incrementally
(rows added later join the same graph), and serializes to and from a byte array, so the store
keeps it inside a checksummed file and nothing is ever loaded from a path the library opens.

Its recall is measured when it is built: a seeded sample of rows is held out of the graph,
searched exactly and through the graph as new queries would be (a row's own neighbourhood
would flatter it), and the search breadth (`efSearch`) is raised until the sample reaches
`TARGET_RECALL`; then the sample joins the graph. Breadth and recall are recorded with the
index; rows added later keep them. Scores it returns are exact cosines of the rows it returns
(the graph keeps the vectors); only which rows come back is approximate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from featstore.search.exact import exact_search

KIND = "faiss-hnsw"
# graph degree and build breadth: on 100k synthetic rows (bench/neighbors.py's), M 16 reached
# recall 0.973 at 0.15 s per 1,000 queries where M 32 needed 0.23 s and M 24 0.31 s
M = 16
EF_CONSTRUCTION = 64
EF_CHOICES = (32, 48, 64, 96, 128, 192, 256, 384, 512)
TARGET_RECALL = 0.97     # recall@10 of held-out rows the search breadth is raised to reach
SAMPLE = 500
ADD_BLOCK = 20000


def _faiss():  # noqa: ANN202  faiss loads only where an index is used
    import faiss

    return faiss


def library_version() -> str:
    return str(_faiss().__version__)


@dataclass
class HnswIndex:
    """A FAISS HNSW index and the search breadth chosen for it."""

    index: object
    ef_search: int = 64
    recall: float | None = None  # measured recall@10 of the sample at `ef_search`

    @classmethod
    def new(cls, width: int) -> HnswIndex:
        faiss = _faiss()
        index = faiss.IndexHNSWFlat(width, M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = EF_CONSTRUCTION
        return cls(index)

    @property
    def rows(self) -> int:
        return int(self.index.ntotal)  # type: ignore[attr-defined]

    def add(self, vectors: np.ndarray, progress: Callable[[int], None] | None = None) -> None:
        """Rows join the graph as rows `rows`, `rows + 1`, ... in order."""
        for a in range(0, len(vectors), ADD_BLOCK):
            block = np.ascontiguousarray(vectors[a:a + ADD_BLOCK], dtype=np.float32)
            self.index.add(block)  # type: ignore[attr-defined]
            if progress is not None:
                progress(len(block))

    def search(self, queries: np.ndarray, k: int, ef: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) best first; a row of -1 where the graph found fewer than k."""
        k = min(k, self.rows)
        self.index.hnsw.efSearch = max(ef or self.ef_search, k)  # type: ignore[attr-defined]
        scores, rows = self.index.search(  # type: ignore[attr-defined]
            np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, rows

    @classmethod
    def build(cls, vectors: np.ndarray, progress: Callable[[int], None] | None = None,
              seed: int = 0, k: int = 10) -> tuple[HnswIndex, np.ndarray]:
        """A graph of every row, tuned on held-out rows (see the module docstring); returns it
        and `order`: graph row i is `vectors[order[i]]`."""
        n = len(vectors)
        index = cls.new(vectors.shape[1])
        held = np.sort(np.random.default_rng(seed).choice(n, min(SAMPLE, n // 10), replace=False))
        rest = np.setdiff1d(np.arange(n), held)
        index.add(vectors[rest], progress)
        index.tune(vectors[held], vectors[rest], k)
        index.add(vectors[held], progress)
        return index, np.concatenate([rest, held])

    def tune(self, queries: np.ndarray, graph_rows: np.ndarray, k: int = 10) -> None:
        """Raise the search breadth until `queries` (rows not in the graph) find their exact top
        k among `graph_rows` (the graph's rows, in graph order) at TARGET_RECALL."""
        k = min(k, len(graph_rows))
        if len(queries) == 0 or k < 1:
            self.recall = None
            return
        _, truth = exact_search(queries, graph_rows, k)
        for ef in EF_CHOICES:
            _, found = self.search(queries, k, ef)
            recall = float(np.mean([len(set(f.tolist()) & set(t.tolist())) / k
                                    for f, t in zip(found, truth, strict=True)]))
            self.ef_search, self.recall = ef, recall
            if recall >= TARGET_RECALL:
                break

    def to_bytes(self) -> np.ndarray:
        return _faiss().serialize_index(self.index)

    @classmethod
    def from_bytes(cls, blob: np.ndarray, ef_search: int, recall: float | None) -> HnswIndex:
        return cls(_faiss().deserialize_index(np.ascontiguousarray(blob, dtype=np.uint8)),
                   ef_search, recall)
