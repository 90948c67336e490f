"""Sequences as a network or a logistic regression reads them: minibatches padded to their own
longest sequence (with a mask and time-gap buckets), or one fixed summary row per sequence.

Both work on a float32 matrix of message vectors (one row per table row, already normalised)
and the row positions of each sequence; neither reads the store.
"""

from __future__ import annotations

import numpy as np
import torch

from featstore.heads.errors import HeadError
from featstore.heads.sequences import time_buckets
from featstore.heads.training import Inputs

SUMMARIES = ("mean", "mean-max", "last", "mean-last")


class SequenceBatches:
    """Padded minibatches of sequences, for the shared training loop (`take`, `subset`,
    `len`, `width`, as `LazyInputs` offers). Sequences longer than `max_len` keep their last
    `max_len` messages."""

    def __init__(self, matrix: np.ndarray, rows: list[np.ndarray],
                 times: list[np.ndarray] | None, max_len: int,
                 order: np.ndarray | None = None) -> None:
        self.matrix = matrix
        self.rows = [r[-max_len:] for r in rows]
        self.buckets = None if times is None else [time_buckets(t)[-max_len:] for t in times]
        self.max_len = max_len
        self.order = np.arange(len(rows)) if order is None else order

    def __len__(self) -> int:
        return len(self.order)

    @property
    def width(self) -> int:
        return int(self.matrix.shape[1]) * max(1, int(np.mean([len(r) for r in self.rows])))

    def subset(self, idx: np.ndarray | torch.Tensor) -> SequenceBatches:
        out = SequenceBatches.__new__(SequenceBatches)
        out.matrix, out.rows, out.buckets, out.max_len = (self.matrix, self.rows, self.buckets,
                                                          self.max_len)
        out.order = self.order[np.asarray(idx, dtype=np.int64)]
        return out

    def take(self, idx: np.ndarray | torch.Tensor) -> Inputs:
        chosen = self.order[np.asarray(idx, dtype=np.int64)]
        lengths = [len(self.rows[i]) for i in chosen]
        if min(lengths, default=1) == 0:
            raise HeadError("a sequence has no messages (an empty sequence)")
        t = max(lengths, default=1)
        x = np.zeros((len(chosen), t, self.matrix.shape[1]), dtype=np.float32)
        mask = np.zeros((len(chosen), t), dtype=bool)
        gaps = np.zeros((len(chosen), t), dtype=np.int64)
        for j, i in enumerate(chosen):
            n = lengths[j]
            x[j, :n] = self.matrix[self.rows[i]]
            mask[j, :n] = True
            if self.buckets is not None:
                gaps[j, :n] = self.buckets[i]
        sources = [torch.from_numpy(gaps)] if self.buckets is not None else []
        return Inputs(torch.from_numpy(x), sources, torch.from_numpy(mask))


def summarize_sequences(kind: str, matrix: np.ndarray, rows: list[np.ndarray]) -> np.ndarray:
    """One row per sequence: the mean of its message vectors, mean and max, the last message,
    or mean and last (vectorised over sequences: the search computes these many times)."""
    if kind not in SUMMARIES:
        raise HeadError(f"unknown summary {kind!r}; choose one of: {', '.join(SUMMARIES)}")
    if any(len(r) == 0 for r in rows):
        raise HeadError("a sequence has no messages (an empty sequence)")
    if not rows:
        width = matrix.shape[1] * (2 if kind in ("mean-max", "mean-last") else 1)
        return np.empty((0, width), dtype=np.float32)
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    v = np.asarray(matrix[np.concatenate(rows)], dtype=np.float32)
    parts = []
    if kind in ("mean", "mean-max", "mean-last"):
        parts.append(np.add.reduceat(v, starts, axis=0) / lengths[:, None])
    if kind == "mean-max":
        parts.append(np.maximum.reduceat(v, starts, axis=0))
    if kind in ("last", "mean-last"):
        parts.append(v[starts + lengths - 1])
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)
