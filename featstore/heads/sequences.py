"""Rows of a table grouped into sequences: one per value of a group column, ordered by an order
column (else by row order), with one label per sequence and, optionally, the time of each event.

Works on tables only (no store, no torch). Every bad input stops with one line naming what is
wrong: an unknown column, a group whose label varies, a group with no rows, a row with no group.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

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


_NUMBER = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*")


def _as_number(value: object) -> float | None:
    """A number, or text that spells one (a CSV cell: "10", "2.5", "1e3"), as a float; None
    for anything else. One rule wherever a column comes from: a dataset made from a CSV file
    holds "10" where a JSONL file or a DataFrame holds 10."""
    if isinstance(value, bool | np.bool_ | int | float | np.integer | np.floating):
        return float(value)
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        return float(value)
    return None


def _order_kind(value: object) -> str:
    if _as_number(value) is not None:
        return "number"
    return "date" if isinstance(value, date | np.datetime64) else "text"


def order_keys(values: pd.Series, column: str, where: str) -> np.ndarray:
    """Sort keys of an --order-by column: numbers (or text spelling numbers) order
    numerically, dates and times chronologically, other text as text; a column mixing these
    kinds (numbers and words) is refused, naming a row of each."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values.to_numpy().astype("datetime64[ns]").astype(np.int64)
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64)
    items = values.tolist()
    kinds = [_order_kind(v) for v in items]
    first = kinds[0] if kinds else "text"
    other = next((j for j, k in enumerate(kinds) if k != first), None)
    if other is not None:
        raise HeadError(f"{where}: order column {column!r} mixes kinds of values (row 1: "
                        f"{items[0]!r} is a {first}, row {other + 1}: {items[other]!r} a "
                        f"{kinds[other]}); give every row a number, or every row a text")
    if first == "number":
        return np.array([_as_number(v) for v in items], dtype=np.float64)
    if first == "date":
        return pd.to_datetime(pd.Series(items), utc=True).to_numpy().astype(np.int64)
    return np.unique(np.array([str(v) for v in items], dtype=object), return_inverse=True)[1]


def event_seconds(values: pd.Series, column: str, where: str) -> np.ndarray:
    """A time column as float seconds: numbers as given, else dates and times parsed; a
    column mixing the two is refused."""
    if values.isna().any():
        raise HeadError(f"{where}: {int(values.isna().sum())} row(s) have no value in time "
                        f"column {column!r}")
    if pd.api.types.is_numeric_dtype(values.dtype) and \
            not pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64)
    if not pd.api.types.is_datetime64_any_dtype(values.dtype):
        numbers = [_as_number(v) for v in values.tolist()]
        given = [n is not None for n in numbers]
        if all(given):
            return np.array(numbers, dtype=np.float64)
        if any(given):
            i = given.index(True)
            raise HeadError(f"{where}: time column {column!r} mixes numbers (row {i + 1}: "
                            f"{values.iloc[i]!r}) with dates or text; use one or the other")
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
    if len({str(g) for g in uniques}) < len(uniques):
        raise HeadError(f"{where}: group column {group_by!r} holds values that read the same "
                        "but differ in type (such as 1 and '1'); give it one type")
    position = np.arange(len(df))
    if order is not None:
        # a stable sort by the order column: ties keep their row order
        position = np.argsort(order_keys(order, order_by, where), kind="stable")
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
