"""Per-source normalisation, fitted on training rows only, read in chunks so float16 rows of
any size are never copied whole."""

from __future__ import annotations

import numpy as np

from featstore.heads.errors import HeadError
from featstore.heads.params import DECLARED

_EPS = 1e-6
FIT_CHUNK_VALUES = 1 << 22  # float64 values per chunk when fitting statistics (32 MB)


class Normalizer:
    """Per-source scaling fitted on training rows only: `standard` (zero mean, unit variance per
    dimension; per layer for layered input), `l2` (unit-length rows) or `none`.

    Works on [n, dim] and [n, layers, dim] (statistics over rows), and on ragged token rows.
    """

    def __init__(self, mode: str = "standard") -> None:
        DECLARED["normalize"].check(mode)
        self.mode = mode
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> Normalizer:
        """Statistics over rows, read in chunks with float64 accumulators (merged as Chan et
        al. do), so float16 input of any size is never copied whole."""
        if self.mode == "standard":
            width = int(np.prod(x.shape[1:])) or 1
            step = max(1, FIT_CHUNK_VALUES // width)
            n, mean, m2 = 0, np.zeros(x.shape[1:]), np.zeros(x.shape[1:])
            for start in range(0, len(x), step):
                c = np.asarray(x[start:start + step], dtype=np.float64)
                k = len(c)
                c_mean = c.mean(axis=0)
                c -= c_mean
                c_m2 = np.einsum("i...,i...->...", c, c)
                delta, total = c_mean - mean, n + k
                mean = mean + delta * (k / total)
                m2 = m2 + c_m2 + delta * delta * (n * k / total)
                n = total
            std = np.sqrt(m2 / max(n, 1)).astype(np.float32)
            self.mean_ = mean.astype(np.float32)
            self.scale_ = np.where(std < _EPS, 1.0, std).astype(np.float32)
        return self

    def fit_rows(self, rows: list[np.ndarray]) -> Normalizer:
        """Fit on ragged token rows [T_i, dim], pooling all tokens."""
        return self.fit(np.concatenate(rows, axis=0) if rows else np.zeros((1, 1), np.float32))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """A float32 copy of `x`, scaled; the input is never modified in place."""
        x = np.asarray(x, dtype=np.float32)
        if self.mode == "standard":
            if self.mean_ is None or self.scale_ is None:
                raise HeadError("Normalizer.transform before fit")
            return (x - self.mean_) / self.scale_
        if self.mode == "l2":
            norm = np.linalg.norm(x, axis=-1, keepdims=True)
            return x / np.maximum(norm, _EPS)
        return x.copy()

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        if self.mode != "standard":
            return {}
        if self.mean_ is None or self.scale_ is None:
            raise HeadError("Normalizer.state before fit")
        return {f"{prefix}.mean": self.mean_, f"{prefix}.scale": self.scale_}

    @classmethod
    def from_state(cls, mode: str, tensors: dict[str, np.ndarray], prefix: str) -> Normalizer:
        n = cls(mode)
        if mode == "standard":
            n.mean_ = np.asarray(tensors[f"{prefix}.mean"], dtype=np.float32)
            n.scale_ = np.asarray(tensors[f"{prefix}.scale"], dtype=np.float32)
        return n
