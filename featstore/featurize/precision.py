"""The consistency contract per compute dtype, in one place: how far a stored vector may be from
an unpadded float32 forward pass of the stock model (the reference), and from another computation
of the same text (another batch, a repair, the Ray engine, another machine).

Under bfloat16 a text's vector depends on its batch: padding changes the attention's blocking and
the matrix kernels round differently for different row counts, so two computations of one text
agree only within bf16's 8 significant bits. The tests and `bench/precision.py` measure against
exactly these bounds; docs/STORE.md states them with the figures measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Bound:
    """`max_error`: the largest |a - b| as a fraction of the layer's largest |value| (per feature
    and layer, over all rows); `min_cosine`: the lowest cosine between a vector and its
    counterpart."""

    max_error: float
    min_cosine: float


@dataclass(frozen=True)
class Deviation:
    max_error: float
    min_cosine: float

    def within(self, bound: Bound) -> bool:
        return self.max_error <= bound.max_error and self.min_cosine >= bound.min_cosine

    def __str__(self) -> str:
        return f"max error {100 * self.max_error:.3f}% of the layer's largest value, " \
               f"lowest cosine {self.min_cosine:.6f}"


# Stored values against the float32 reference. float32 compute differs from it only by summation
# order; float16 storage adds at most 2^-11 of a value. bfloat16 keeps 8 significant bits, which
# moves most values by about 1% of their layer's largest value; but the few huge activations a
# base-size encoder grows in its middle layers are sensitive: on ~300-token texts
# all-mpnet-base-v2's max-pooled layers 9-10 moved by 13.5% (bench/precision.py --long), while
# every vector kept cosine >= 0.9992. The cosine is the bound that says how close a vector is;
# the error bound catches a computation gone wrong.
TO_REFERENCE = {
    "float32": Bound(max_error=1e-3, min_cosine=0.99999),
    "bfloat16": Bound(max_error=0.2, min_cosine=0.999),
}
# Two computations of one text (another batch, a repair, Ray vs local, another machine): each is
# within TO_REFERENCE, so together within twice the error and cos(2 * arccos(c)) = 2c^2 - 1.
BETWEEN_RUNS = {
    "float32": Bound(max_error=2e-3, min_cosine=0.99996),
    "bfloat16": Bound(max_error=0.4, min_cosine=0.996),
}


def between_runs(a: str, b: str) -> Bound:
    """The bound for two computations of one text in compute dtypes `a` and `b` (a store
    extended on another CPU kind mixes them): the looser side's, doubled as above."""
    if a == b:
        return BETWEEN_RUNS[a]
    return max((BETWEEN_RUNS[a], BETWEEN_RUNS[b]), key=lambda x: x.max_error)


def deviation(reference: np.ndarray, other: np.ndarray) -> Deviation:
    """How far `other` is from `reference`: arrays [rows, layers, hidden] or [rows, hidden],
    one row per text in the same order."""
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(other, dtype=np.float64)
    if ref.shape != got.shape:
        raise ValueError(f"shapes differ: {ref.shape} vs {got.shape}")
    if ref.ndim == 2:
        ref, got = ref[:, None, :], got[:, None, :]
    scale = np.abs(ref).max(axis=(0, 2), keepdims=True)
    scale[scale == 0] = 1.0
    err = float((np.abs(ref - got) / scale).max()) if ref.size else 0.0
    norms = np.linalg.norm(ref, axis=-1) * np.linalg.norm(got, axis=-1)
    dots = (ref * got).sum(-1)
    # a zero vector on both sides (a layer of padding-free constants) agrees perfectly
    cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 1.0)
    return Deviation(max_error=err, min_cosine=float(cos.min()) if cos.size else 1.0)


def same_up_to_summation_order(got: Sequence, reference: Sequence) -> bool:
    """What an execution change (oneDNN linears, featstore's attention) must keep: float32
    hidden states equal to the stock code's within 1e-4, absolute and relative."""
    import torch

    return len(got) == len(reference) and all(
        torch.allclose(a, b, rtol=1e-4, atol=1e-4) for a, b in zip(got, reference, strict=True))
