"""Label columns and label values: which column holds labels, classes in a fixed order, numeric
regression targets. Each bad input stops with a one-line `HeadError` that names the problem.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from featstore.heads.errors import HeadError, ParamError, literal
from featstore.store import KEY_COLUMN

LABEL_COLUMNS = ("label", "category")


def label_column(df: pd.DataFrame, requested: str | None, where: str) -> str:
    """`requested`, else `label`, else `category`; an error lists the columns otherwise."""
    cols = [c for c in df.columns if c != KEY_COLUMN]
    if requested is not None:
        if requested not in df.columns:
            raise ParamError(f"{literal(where)} has no label column "
                             f"{literal(repr(requested))} (columns: {literal(', '.join(cols))}); "
                             "name it with {label_col}")
        return requested
    for name in LABEL_COLUMNS:
        if name in df.columns:
            return name
    raise ParamError(f"{literal(where)} has no 'label' or 'category' column (columns: "
                     f"{literal(', '.join(cols))}); name the label column with {{label_col}}")


def check_label_values(values: pd.Series, column: str, where: str) -> None:
    missing = int(values.isna().sum())
    if missing:
        raise HeadError(f"{where}: {missing} row(s) have no value in label column {column!r}; "
                        "fill or drop them before fitting")


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


def check_classes(labels: LabelMap, where: str) -> None:
    """A classifier needs two classes at least."""
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
