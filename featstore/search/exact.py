"""Exact top-k by cosine: the reference every approximate answer is measured against.

Queries and corpus are unit-length float32 rows, so a dot product is a cosine. The corpus is
scored in blocks (`CORPUS_BLOCK` rows x `QUERY_BLOCK` queries per matrix product), keeping a
running top k per query, so memory beyond the inputs is one score block (256 MB at most)
whatever the corpus size. torch does the products and the selection: on the CPU it is the same
BLAS with a faster multi-threaded top-k than numpy's argpartition.

Ties (exact duplicates in the corpus) are ordered by corpus row, so the answer is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

QUERY_BLOCK = 1024
CORPUS_BLOCK = 65536


def exact_search(queries: np.ndarray, corpus: np.ndarray, k: int,
                 exclude: np.ndarray | None = None,
                 progress: Callable[[int], None] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(scores [q, k'], corpus rows [q, k']) of the k most similar corpus rows per query, best
    first, k' = min(k, corpus rows). `exclude[i]`: a corpus row query i may not return
    (itself, in a self-join), or -1. `progress(n)` is told of each block of queries done."""
    q, n = len(queries), len(corpus)
    k = min(k, n)
    scores = np.empty((q, k), dtype=np.float32)
    ids = np.empty((q, k), dtype=np.int64)
    if q == 0 or k == 0:
        return scores, ids
    c = torch.from_numpy(np.ascontiguousarray(corpus, dtype=np.float32))
    for a in range(0, q, QUERY_BLOCK):
        b = min(q, a + QUERY_BLOCK)
        qb = torch.from_numpy(np.ascontiguousarray(queries[a:b], dtype=np.float32))
        best_s = torch.full((b - a, k), -np.inf, dtype=torch.float32)
        best_i = torch.zeros((b - a, k), dtype=torch.int64)
        for s in range(0, n, CORPUS_BLOCK):
            e = min(n, s + CORPUS_BLOCK)
            block = qb @ c[s:e].T
            if exclude is not None:
                rows = torch.from_numpy(exclude[a:b])
                hit = (rows >= s) & (rows < e)
                if bool(hit.any()):
                    r = torch.nonzero(hit).squeeze(1)
                    block[r, rows[r] - s] = -np.inf
            kk = min(k, e - s)
            top_s, top_i = torch.topk(block, kk, dim=1)
            merged_s = torch.cat([best_s, top_s], dim=1)
            merged_i = torch.cat([best_i, top_i + s], dim=1)
            keep_s, pos = torch.topk(merged_s, k, dim=1)
            best_s, best_i = keep_s, torch.gather(merged_i, 1, pos)
        scores[a:b], ids[a:b] = _ordered(best_s.numpy(), best_i.numpy())
        if progress is not None:
            progress(b - a)
    return scores, ids


def _ordered(s: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best first, ties by corpus row."""
    order = np.lexsort((i, -s), axis=1) if s.ndim == 2 else None
    assert order is not None
    return np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)


def brute_force(queries: np.ndarray, corpus: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The same answer by one float64 matrix product and a full sort (for tests and checks)."""
    s = queries.astype(np.float64) @ corpus.astype(np.float64).T
    order = np.argsort(-s, axis=1, kind="stable")[:, :min(k, corpus.shape[0])]
    return np.take_along_axis(s, order, 1), order
