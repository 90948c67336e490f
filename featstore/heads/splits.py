"""Which rows train and which evaluate: the split column, folds, few-shot samples, early-stopping
hold-outs, and the overlap between train and eval texts. Works on tables and label arrays only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from featstore.heads.errors import HeadError
from featstore.heads.training_data import SPLIT_COLUMN


class FoldScores:
    """A candidate's scores over inner folds (a `scores` list), summarised: what the text and
    pair search (`selection.auto.Trial`) and the sequence search (`SequenceCandidate`) rank
    by."""

    scores: list[float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores)) if self.scores else float("nan")

    @property
    def std(self) -> float:
        return float(np.std(self.scores)) if self.scores else float("nan")


TRAIN_SPLITS = ("train",)
DEV_SPLITS = ("dev", "validation", "valid", "val")
TEST_SPLITS = ("test",)


def split_rows(df: pd.DataFrame) -> dict[str, pd.DataFrame] | None:
    """Rows by role from a `split` column: train, dev (validation), test; None without one."""
    if SPLIT_COLUMN not in df.columns:
        return None
    split = df[SPLIT_COLUMN].astype(str).str.strip().str.lower()
    parts = {
        "train": df[split.isin(TRAIN_SPLITS)],
        "dev": df[split.isin(DEV_SPLITS)],
        "test": df[split.isin(TEST_SPLITS)],
    }
    if parts["train"].empty:
        known = ", ".join(sorted(split.unique()))
        raise HeadError(f"split column has no 'train' rows (values: {known})")
    return parts


def stratified_folds(y: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """K (train, eval) index pairs with every class spread evenly over the folds."""
    if k < 2:
        raise HeadError(f"--cv needs at least 2 folds, got {k}")
    counts = np.bincount(y)
    counts = counts[counts > 0]
    if counts.min() < k:
        raise HeadError(f"--cv {k} needs at least {k} examples of every class; the smallest "
                        f"class has {counts.min()}; use fewer folds or --eval")
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(skf.split(np.zeros(len(y)), y))


def kfold(n: int, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Plain shuffled folds, for regression targets."""
    if k < 2 or n < k:
        raise HeadError(f"--cv {k} needs at least 2 folds and {k} rows, got {n} rows")
    order = np.random.default_rng(seed).permutation(n)
    return [(np.sort(np.setdiff1d(order, part)), np.sort(part))
            for part in np.array_split(order, k)]


def inner_folds(y: np.ndarray | None, n: int, k: int, seed: int
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Inner cross-validation folds of training rows, for choosing among configurations:
    stratified (plain for regression targets, `y` None), fewer than `k` when the smallest class
    is smaller; none when there cannot be two (the caller says what that means)."""
    if y is None:
        return kfold(n, min(k, n // 2), seed) if n >= 4 else []
    counts = np.bincount(y)
    folds = min(k, int(counts[counts > 0].min()))
    return stratified_folds(y, folds, seed) if folds >= 2 else []


def few_shot(y: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """Indices of `shots` examples per label (all of a label's examples when it has fewer)."""
    if shots < 1:
        raise HeadError(f"--shots must be at least 1, got {shots}")
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(y == c))[:shots] for c in np.unique(y)]
    return np.sort(np.concatenate(picked))


def holdout(y: np.ndarray | None, n: int, fraction: float, seed: int) -> tuple[np.ndarray,
                                                                               np.ndarray]:
    """A (fit, held-out) split of train for early stopping; stratified for class labels."""
    rng = np.random.default_rng(seed)
    if y is None:
        order = rng.permutation(n)
        cut = max(1, int(round(n * fraction)))
        return np.sort(order[cut:]), np.sort(order[:cut])
    held = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        # a class with a single example stays in the fit part; it cannot be both learned and held
        take = int(round(len(idx) * fraction)) if len(idx) > 1 else 0
        held.append(idx[:take])
    held_idx = np.sort(np.concatenate(held)) if held else np.empty(0, dtype=np.int64)
    if len(held_idx) == 0:
        return np.arange(n), held_idx
    fit_idx = np.setdiff1d(np.arange(n), held_idx)
    return fit_idx, held_idx


def overlap(train_keys: list[str], eval_keys: list[str]) -> int:
    """How many evaluation texts also occur in the training rows (matched by text key)."""
    return len(set(train_keys) & set(eval_keys))
