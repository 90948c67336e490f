"""The consistency contract (featstore.featurize.precision) as test assertions: every test that
compares vectors computed in two runs runs under float32 and under bfloat16 compute, bfloat16
forced even where the CPU only emulates it (slower, the same rounding class), so a machine
without bf16 units catches what one with them would hit."""

from __future__ import annotations

import numpy as np

from featstore.featurize.precision import BETWEEN_RUNS, TO_REFERENCE, Bound, deviation

COMPUTE_DTYPES = ("float32", "bfloat16")


def _check(got: np.ndarray, want: np.ndarray, bound: Bound, what: str) -> None:
    dev = deviation(want, got)
    assert dev.within(bound), f"{what}: {dev}; the contract allows {bound}"


def assert_same_text_same_vector(got: dict[str, np.ndarray] | np.ndarray,
                                 want: dict[str, np.ndarray] | np.ndarray, compute: str,
                                 what: str = "recomputed vectors") -> None:
    """Two computations of the same texts agree within BETWEEN_RUNS[compute]."""
    if isinstance(want, dict):
        assert set(got) == set(want)
        for name in want:
            _check(got[name], want[name], BETWEEN_RUNS[compute], f"{what} ({name})")
    else:
        _check(got, want, BETWEEN_RUNS[compute], what)


def assert_near_reference(got: np.ndarray, reference: np.ndarray, compute: str,
                          what: str = "stored vectors") -> None:
    """Stored vectors agree with an unpadded float32 forward within TO_REFERENCE[compute]."""
    _check(got, reference, TO_REFERENCE[compute], what)
