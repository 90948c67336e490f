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
            raise ParamError(f"{literal(where)} has no column {literal(repr(requested))} for "
                             f"{{label_col}}; its columns are: {literal(', '.join(cols))}")
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

    def encode(self, values: pd.Series, where: str, allow_unseen: bool = False) -> np.ndarray:
        """Class indices of `values`. A label the classes lack is refused, naming the switch
        that allows it; allowed, each such label gets its own negative code (-1, -2, ...),
        which no prediction can equal: scored as an error, as scikit-learn scores it."""
        index = {v: i for i, v in enumerate(self.classes)}
        plain = [_plain(v) for v in values.tolist()]
        unknown = unseen_labels(self, values)
        if unknown and not allow_unseen:
            shown = ", ".join(map(repr, unknown[:5])) + (" ..." if len(unknown) > 5 else "")
            raise ParamError(f"{literal(where)} has labels the training data never shows: "
                             f"{literal(shown)} ({len(unknown)} label(s) appear only in "
                             "evaluation); to score their rows as errors, pass "
                             "{allow_unseen_labels}")
        index.update({v: -(i + 1) for i, v in enumerate(unknown)})
        return np.fromiter((index[v] for v in plain), dtype=np.int64, count=len(plain))

    def decode(self, idx: np.ndarray) -> list:
        return [self.classes[int(i)] for i in idx]


def unseen_labels(labels: LabelMap, values: pd.Series) -> list:
    """The values that are not among the classes, each once, sorted."""
    index = set(labels.classes)
    return sorted({p for v in values.tolist() if (p := _plain(v)) not in index}, key=str)


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
