"""Rows of a table grouped into sequences: one per value of a group column, ordered by an order
column (else by row order), with one label per sequence and, optionally, the time of each event.

Works on tables only (no store, no torch). Every bad input stops with one line naming what is
wrong: an unknown column, a group whose label varies, a group with no rows, a row with no group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from featstore.heads.errors import HeadError, ParamError, literal
from featstore.store import KEY_COLUMN

TIME_BUCKETS = 32  # bucket 0: first event; 1..31: log2 of the seconds since the previous one


@dataclass
class Sequences:
    """Sequences over the rows of one table.

    `groups`: the group values, in order of first appearance; `rows[i]`: positions (into the
    table) of sequence i's rows, in sequence order; `labels`: one per sequence, or None;
    `times`: seconds since the first event per row of each sequence, or None.
    """

    groups: list
    rows: list[np.ndarray]
    labels: pd.Series | None = None
    times: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.groups)

    def subset(self, idx: np.ndarray) -> Sequences:
        idx = np.asarray(idx, dtype=np.int64)
        return Sequences([self.groups[i] for i in idx], [self.rows[i] for i in idx],
                         None if self.labels is None
                         else self.labels.iloc[idx].reset_index(drop=True),
                         None if self.times is None else [self.times[i] for i in idx])

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(r) for r in self.rows], dtype=np.int64)


def labels_of(seqs: Sequences, where: str) -> pd.Series:
    """The sequences' labels; refused when they were grouped without any."""
    if seqs.labels is None:
        raise HeadError(f"{where}: the sequences carry no labels")
    return seqs.labels


def _column(df: pd.DataFrame, name: str, param: str, where: str) -> pd.Series:
    """The column a parameter (`group_by`, ...) names; refused, naming it, when missing."""
    if name not in df.columns:
        cols = ", ".join(str(c) for c in df.columns if c != KEY_COLUMN)
        raise ParamError(f"{literal(where)} has no column {literal(repr(name))} for "
                         f"{{{param}}} (columns: {literal(cols)})")
    return df[name]


def _group_name(value: object) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


def event_seconds(values: pd.Series, column: str, where: str) -> np.ndarray:
    """A time column as float seconds: numbers as given, else dates and times parsed."""
    if values.isna().any():
        raise HeadError(f"{where}: {int(values.isna().sum())} row(s) have no value in time "
                        f"column {column!r}")
    numeric = pd.to_numeric(values, errors="coerce")
    if not numeric.isna().any():
        return numeric.to_numpy(dtype=np.float64)
    try:
        stamps = pd.to_datetime(values, errors="raise", utc=True)
    except (ValueError, TypeError):
        raise HeadError(f"{where}: time column {column!r} holds values that are neither numbers "
                        "(seconds) nor dates and times") from None
    return (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64)


def group_rows(df: pd.DataFrame, group_by: str, order_by: str | None = None,
               time_col: str | None = None, label_col: str | None = None,
               where: str = "the given rows") -> Sequences:
    """The table's rows as sequences, with labels from `label_col` (constant per group)."""
    if not len(df):
        raise HeadError(f"{where} has no rows: there is no sequence to build")
    groups = _column(df, group_by, "group_by", where)
    if groups.isna().any():
        raise HeadError(f"{where}: {int(groups.isna().sum())} row(s) have no value in group "
                        f"column {group_by!r}")
    order = None
    if order_by is not None:
        order = _column(df, order_by, "order_by", where)
        if order.isna().any():
            raise HeadError(f"{where}: {int(order.isna().sum())} row(s) have no value in order "
                            f"column {order_by!r}")
    seconds = None
    if time_col is not None:
        seconds = event_seconds(_column(df, time_col, "time_col", where), time_col, where)
    codes, uniques = pd.factorize(groups, sort=False)
    position = np.arange(len(df))
    if order is not None:
        try:  # a stable sort by the order column, ties kept in row order
            ranks = order.rank(method="first").to_numpy()
        except TypeError:
            raise HeadError(f"{where}: order column {order_by!r} mixes values that cannot be "
                            "compared") from None
        position = np.argsort(ranks, kind="stable")
    by_group = codes[position]
    sorted_pos = position[np.argsort(by_group, kind="stable")]
    bounds = np.searchsorted(np.sort(by_group, kind="stable"), np.arange(len(uniques) + 1))
    rows = [sorted_pos[bounds[i]:bounds[i + 1]] for i in range(len(uniques))]
    times = None
    if seconds is not None:
        times = [seconds[r] - seconds[r[0]] for r in rows]
    labels = None
    if label_col is not None:
        labels = sequence_labels(df[label_col], rows, list(uniques), group_by, label_col, where)
    return Sequences(list(uniques), rows, labels, times)


def sequence_labels(values: pd.Series, rows: list[np.ndarray], groups: list, group_by: str,
                    label_col: str, where: str) -> pd.Series:
    """One label per sequence from a column that must be constant within each group."""
    arr = values.to_numpy()
    missing = values.isna().to_numpy()
    out = []
    for g, r in zip(groups, rows, strict=True):
        if missing[r].any():
            raise HeadError(f"{where}: group {_group_name(g)} has rows with no value in label "
                            f"column {label_col!r}; fill or drop them")
        seen = pd.unique(arr[r])
        if len(seen) > 1:
            shown = ", ".join(map(repr, list(seen)[:3]))
            raise HeadError(f"{where}: labels vary within group {_group_name(g)} of "
                            f"{group_by!r} ({shown}); a sequence needs one label "
                            "(give it per group, or pass --labels FILE keyed by the group)")
        out.append(seen[0])
    return pd.Series(out, dtype=object if values.dtype == object else values.dtype)


def labels_from_table(table: pd.DataFrame, groups: list, group_by: str, label_col: str,
                      where: str, strict: bool = False) -> pd.Series:
    """Labels keyed by group (a --labels file): one row per group, every sequence labelled;
    `strict` also refuses a labelled group that has no rows (an empty sequence)."""
    key = _column(table, group_by, "group_by", where)
    values = _column(table, label_col, "label_col", where)
    # group values from a file may be read as numbers where the dataset has strings: match text
    as_text = key.astype(str)
    dup = as_text[as_text.duplicated()]
    if len(dup):
        raise HeadError(f"{where}: group {dup.iloc[0]!r} is labelled more than once")
    by_group = dict(zip(as_text.tolist(), values.tolist(), strict=True))
    missing = [g for g in groups if str(g) not in by_group]
    if missing:
        raise HeadError(f"{where} has no label for group {_group_name(missing[0])}"
                        + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    out = pd.Series([by_group[str(g)] for g in groups])
    if out.isna().any():
        g = groups[int(np.flatnonzero(out.isna().to_numpy())[0])]
        raise HeadError(f"{where}: group {_group_name(g)} has no value in label column "
                        f"{label_col!r}")
    extra = sorted(set(as_text) - {str(g) for g in groups})
    if strict and extra:
        raise HeadError(f"{where} labels group {extra[0]!r}, which has no rows in the data: an "
                        "empty sequence")
    return out


def time_buckets(seconds: np.ndarray, n_buckets: int = TIME_BUCKETS) -> np.ndarray:
    """Bucket of the time since the previous event: 0 for the first event, then
    1 + floor(log2(1 + gap seconds)), capped; a negative gap (rows not in time order) counts
    as none."""
    gaps = np.diff(np.asarray(seconds, dtype=np.float64), prepend=np.nan)
    out = np.zeros(len(gaps), dtype=np.int64)
    later = ~np.isnan(gaps)
    out[later] = 1 + np.floor(np.log2(1.0 + np.clip(gaps[later], 0, None))).astype(np.int64)
    return np.clip(out, 0, n_buckets - 1)


def split_per_group(split: pd.Series, rows: list[np.ndarray], groups: list, where: str
                    ) -> np.ndarray:
    """The split value of each sequence; refuses a group whose rows sit in several splits."""
    arr = split.astype(str).str.strip().str.lower().to_numpy()
    out = []
    for g, r in zip(groups, rows, strict=True):
        seen = pd.unique(arr[r])
        if len(seen) > 1:
            raise HeadError(f"{where}: group {_group_name(g)} has rows in several splits "
                            f"({', '.join(map(str, seen))}); a sequence must stay whole")
        out.append(seen[0])
    return np.array(out, dtype=object)
