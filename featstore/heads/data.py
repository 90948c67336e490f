"""Which rows train and which evaluate: datasets, label columns, splits, folds, few-shot samples.

Everything here works on dataset tables (a `_key` column plus the corpus columns) and label arrays;
nothing reads features. Each bad input stops with a one-line `HeadError` that names the problem.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from featstore.heads.errors import HeadError
from featstore.store import KEY_COLUMN

LABEL_COLUMNS = ("label", "category")
SPLIT_COLUMN = "split"
TRAIN_SPLITS = ("train",)
DEV_SPLITS = ("dev", "validation", "valid", "val")
TEST_SPLITS = ("test",)


def label_column(df: pd.DataFrame, requested: str | None, where: str) -> str:
    """`requested`, else `label`, else `category`; an error lists the columns otherwise."""
    cols = [c for c in df.columns if c != KEY_COLUMN]
    if requested is not None:
        if requested not in df.columns:
            raise HeadError(f"{where} has no label column {requested!r} "
                            f"(columns: {', '.join(cols)}); pass --label-col")
        return requested
    for name in LABEL_COLUMNS:
        if name in df.columns:
            return name
    raise HeadError(f"{where} has no 'label' or 'category' column (columns: {', '.join(cols)}); "
                    "name the label column with --label-col")


def check_label_values(values: pd.Series, column: str, where: str) -> None:
    missing = int(values.isna().sum())
    if missing:
        raise HeadError(f"{where}: {missing} row(s) have no value in label column {column!r}; "
                        "fill or drop them before fitting")


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


@dataclass
class LabelMap:
    """Label values in a fixed order; class i of a head is `classes[i]`."""

    classes: list

    @classmethod
    def fit(cls, values: pd.Series) -> LabelMap:
        uniq = pd.unique(values)
        try:
            ordered = sorted(uniq.tolist())
        except TypeError:
            ordered = sorted(uniq.tolist(), key=str)
        return cls([_plain(v) for v in ordered])

    def encode(self, values: pd.Series, where: str) -> np.ndarray:
        index = {v: i for i, v in enumerate(self.classes)}
        plain = [_plain(v) for v in values.tolist()]
        unknown = sorted({v for v in plain if v not in index}, key=str)
        if unknown:
            shown = ", ".join(map(repr, unknown[:5])) + (" ..." if len(unknown) > 5 else "")
            raise HeadError(f"{where} has labels the training data never shows: {shown} "
                            f"({len(unknown)} label(s) appear only in evaluation)")
        return np.fromiter((index[v] for v in plain), dtype=np.int64, count=len(plain))

    def decode(self, idx: np.ndarray) -> list:
        return [self.classes[int(i)] for i in idx]


def _plain(v: object) -> object:
    """numpy scalars to Python ones, so label maps survive a JSON round trip unchanged."""
    return v.item() if isinstance(v, np.generic) else v


def check_classes(y: np.ndarray, labels: LabelMap, where: str) -> None:
    if len(labels.classes) < 2:
        only = labels.classes[0] if labels.classes else None
        raise HeadError(f"{where} has only one class ({only!r}); a classifier needs at least two")


def regression_targets(values: pd.Series, column: str, where: str) -> np.ndarray:
    try:
        y = pd.to_numeric(values, errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError):
        raise HeadError(f"{where}: label column {column!r} is not numeric; "
                        "--task regression needs numbers") from None
    if np.std(y) == 0:
        raise HeadError(f"{where}: label column {column!r} is constant; nothing to regress")
    return y


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
