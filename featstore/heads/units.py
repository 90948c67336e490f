"""The unit of one example, as a small input adapter: a text (one row), or a sequence of texts
(the rows of one group). An adapter says how a table's rows become examples with one label
each, how rows split into train and evaluation (a sequence's rows stay together), which
estimator learns from them, and what a run reports about them. The evaluation plan, the
protocol runner, its result, fit-and-save and compare are written once over adapters
(`featstore.heads.protocols`, `featstore.services`); another kind of example (a pair of texts)
is another adapter here and the estimator that reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from featstore.heads.base import StoreHead
from featstore.heads.errors import HeadError
from featstore.heads.estimator import make_head
from featstore.heads.labels import check_label_values, label_column
from featstore.heads.pair_estimator import PairEstimator, make_pair_head
from featstore.heads.sequence_estimator import SequenceClassifier
from featstore.heads.sequences import group_rows, labels_from_table, split_per_group
from featstore.heads.splits import (
    DEV_SPLITS,
    SPLIT_COLUMN,
    TEST_SPLITS,
    TRAIN_SPLITS,
    overlap,
    split_rows,
)
from featstore.store import KEY_COLUMN, PAIR_KEY_COLUMNS, Store, keys_for


@dataclass
class Examples:
    """The examples of a table: one label each, and the table rows of each (`parts`; None
    when row i is example i)."""

    rows: pd.DataFrame
    labels: pd.Series
    parts: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.rows) if self.parts is None else len(self.parts)

    def rows_of(self, idx: np.ndarray) -> pd.DataFrame:
        """The table rows of examples `idx`, in table order."""
        if self.parts is None:
            return self.rows.iloc[idx].reset_index(drop=True)
        keep = np.concatenate([self.parts[i] for i in idx]) if len(idx) else \
            np.empty(0, dtype=np.int64)
        return self.rows.iloc[np.sort(keep)].reset_index(drop=True)


class Unit:
    """What every adapter answers; see the module docstring. `tasks`: what its estimators
    learn; `dev_for_early_stopping`: a dev split next to a test split stops torch training
    early; `refit_on`: what the kept head of a CV run is refitted on, in words; `lone_texts`:
    an example can be given as one text (--text, stdin); `text_columns`: the columns of a row
    that hold texts to encode."""

    name: ClassVar[str]
    tasks: ClassVar[tuple[str, ...]]
    dev_for_early_stopping: ClassVar[bool]
    refit_on: ClassVar[str]
    lone_texts: ClassVar[bool]
    text_columns: ClassVar[tuple[str, ...]] = ("text",)

    def with_labels(self, rows: pd.DataFrame, label_col: str | None, where: str
                    ) -> tuple[pd.DataFrame, str]:
        """The rows carrying their labels in a column, and its name."""
        return rows, label_column(rows, label_col, where)

    def examples(self, rows: pd.DataFrame, label_col: str, where: str) -> Examples:
        raise NotImplementedError

    def split(self, rows: pd.DataFrame, where: str) -> dict[str, pd.DataFrame] | None:
        """Rows by role (train, dev, test) from a split column; None without one."""
        raise NotImplementedError

    def describe_cv(self, k: int, task: str) -> str:
        return f"{k}-fold stratified CV" if task == "classification" else f"{k}-fold CV"

    def describe_eval(self, rows: pd.DataFrame) -> str:
        """What follows a plan's description of its evaluation rows."""
        return ""

    def overlap(self, train: pd.DataFrame, eval_rows: pd.DataFrame) -> int:
        """Evaluation examples that are also training examples."""
        return 0

    def estimator(self, task: str, params: dict[str, Any]) -> StoreHead:
        raise NotImplementedError

    def summary(self, examples: int, train_examples: int, head: StoreHead) -> dict[str, Any]:
        """What a run's summary adds for this unit."""
        return {}

    def predictions(self, store: Store, head: StoreHead, rows: pd.DataFrame, label_col: str,
                    run: int) -> pd.DataFrame:
        """One run's predictions on its evaluation rows (an id per example, gold, predicted,
        run), as reports read them."""
        raise NotImplementedError

    def prediction_table(self, store: Store, head: StoreHead, rows: pd.DataFrame,
                         top_k: int | None = None) -> pd.DataFrame:
        """What `predict` prints: a row per example with its prediction and, for classifiers,
        each class's probability (or the `top_k` most probable labels)."""
        raise NotImplementedError


class TextUnit(Unit):
    """One row, one text, one example."""

    name = "text"
    tasks = ("classification", "regression")
    dev_for_early_stopping = True
    refit_on = "all training rows"
    lone_texts = True

    def examples(self, rows: pd.DataFrame, label_col: str, where: str) -> Examples:
        check_label_values(rows[label_col], label_col, where)
        return Examples(rows, rows[label_col].reset_index(drop=True))

    def split(self, rows: pd.DataFrame, where: str) -> dict[str, pd.DataFrame] | None:
        return split_rows(rows)

    def overlap(self, train: pd.DataFrame, eval_rows: pd.DataFrame) -> int:
        return overlap(train[KEY_COLUMN].tolist(), eval_rows[KEY_COLUMN].tolist())

    def estimator(self, task: str, params: dict[str, Any]) -> StoreHead:
        return make_head(task, **params)

    def predictions(self, store: Store, head: StoreHead, rows: pd.DataFrame, label_col: str,
                    run: int) -> pd.DataFrame:
        proba = np.asarray(head.predict_proba(store, rows), dtype=np.float64)  # type: ignore[attr-defined]
        return with_probabilities(
            pd.DataFrame({KEY_COLUMN: rows[KEY_COLUMN].to_numpy(),
                          "gold": rows[label_col].astype(str).to_numpy(), "run": run}),
            proba, [str(c) for c in head.classes_])  # type: ignore[attr-defined]

    def prediction_table(self, store: Store, head: StoreHead, rows: pd.DataFrame,
                         top_k: int | None = None) -> pd.DataFrame:
        out = rows.copy()
        keys = pd.DataFrame({KEY_COLUMN: keys_for(out["text"].astype(str).tolist())})
        return with_predictions(out, store, head, keys, top_k)


@dataclass(eq=False)
class SequenceUnit(Unit):
    """The rows of one group, ordered, are one example with one label; `labels` (a --labels
    table keyed by group) gives the labels when the rows have none."""

    group_by: str
    order_by: str | None = None
    time_col: str | None = None
    labels: pd.DataFrame | None = field(default=None, repr=False)

    name = "sequence"
    tasks = ("classification",)
    dev_for_early_stopping = False
    refit_on = "every training sequence"
    lone_texts = False

    def _group(self, rows: pd.DataFrame, label_col: str | None, where: str):  # noqa: ANN202
        return group_rows(rows, self.group_by, self.order_by, self.time_col, label_col, where)

    def with_labels(self, rows: pd.DataFrame, label_col: str | None, where: str
                    ) -> tuple[pd.DataFrame, str]:
        if self.labels is None:
            return rows, label_column(rows, label_col, where)
        seqs = self._group(rows, None, where)
        col = label_column(self.labels, label_col, "the --labels file")
        per_group = labels_from_table(self.labels, seqs.groups, self.group_by, col,
                                      "the --labels file", strict=True)
        values = np.empty(len(rows), dtype=object)
        for part, value in zip(seqs.rows, per_group.tolist(), strict=True):
            values[part] = value
        return rows.assign(**{col: values}), col

    def examples(self, rows: pd.DataFrame, label_col: str, where: str) -> Examples:
        seqs = self._group(rows, label_col, where)
        if seqs.labels is None:
            raise HeadError(f"{where}: the sequences carry no labels")
        return Examples(rows, seqs.labels, seqs.rows)

    def split(self, rows: pd.DataFrame, where: str) -> dict[str, pd.DataFrame] | None:
        if SPLIT_COLUMN not in rows.columns:
            return None
        seqs = self._group(rows, None, where)
        split = split_per_group(rows[SPLIT_COLUMN], seqs.rows, seqs.groups, where)
        parts = {}
        for role, names in (("train", TRAIN_SPLITS), ("dev", DEV_SPLITS), ("test", TEST_SPLITS)):
            idx = np.flatnonzero(np.isin(split, names))
            keep = np.concatenate([seqs.rows[i] for i in idx]) if len(idx) else []
            parts[role] = rows.iloc[np.sort(keep)].reset_index(drop=True)
        if parts["train"].empty:
            raise HeadError(f"{where}: no group is in the 'train' split")
        return parts

    def describe_cv(self, k: int, task: str) -> str:
        return f"{k}-fold stratified CV grouped by {self.group_by}"

    def describe_eval(self, rows: pd.DataFrame) -> str:
        return f" ({len(self._group(rows, None, 'the evaluation rows'))} sequences)"

    def estimator(self, task: str, params: dict[str, Any]) -> StoreHead:
        if task not in self.tasks:
            raise HeadError("sequence heads classify; --task regression is not supported with "
                            "--group-by")
        return SequenceClassifier(**{**params, "group_by": self.group_by,
                                     "order_by": self.order_by, "time_col": self.time_col})

    def summary(self, examples: int, train_examples: int, head: StoreHead) -> dict[str, Any]:
        return {"sequences": examples, "train_sequences": train_examples,
                "seq_head": getattr(head, "kind_", None),
                "inner_cv": head.fit_info_.get("inner_cv")}

    def predictions(self, store: Store, head: StoreHead, rows: pd.DataFrame, label_col: str,
                    run: int) -> pd.DataFrame:
        gold = self.examples(rows, label_col, "the evaluation rows")
        table = head.predict_table(store, rows)  # type: ignore[attr-defined]
        classes = [str(c) for c in head.classes_]  # type: ignore[attr-defined]
        proba = table[[f"p_{c}" for c in head.classes_]].to_numpy(dtype=np.float64)  # type: ignore[attr-defined]
        return with_probabilities(
            pd.DataFrame({self.group_by: table[self.group_by],
                          "gold": gold.labels.astype(str).to_numpy(), "run": run}),
            proba, classes)

    def prediction_table(self, store: Store, head: StoreHead, rows: pd.DataFrame,
                         top_k: int | None = None) -> pd.DataFrame:
        if top_k is not None:
            raise HeadError("--top-k is for per-text heads; a sequence head gives every class's "
                            "probability")
        return head.predict_table(store, rows)  # type: ignore[attr-defined]


@dataclass(eq=False)
class PairUnit(Unit):
    """One row, one pair of texts (columns `a` and `b`), one example."""

    a: str = "text_a"
    b: str = "text_b"

    name = "pair"
    tasks = ("classification", "regression")
    dev_for_early_stopping = True
    refit_on = "all training pairs"
    lone_texts = False

    @property
    def text_columns(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.a, self.b)

    def examples(self, rows: pd.DataFrame, label_col: str, where: str) -> Examples:
        check_label_values(rows[label_col], label_col, where)
        return Examples(rows, rows[label_col].reset_index(drop=True))

    def split(self, rows: pd.DataFrame, where: str) -> dict[str, pd.DataFrame] | None:
        return split_rows(rows)

    def describe_eval(self, rows: pd.DataFrame) -> str:
        return ""

    def overlap(self, train: pd.DataFrame, eval_rows: pd.DataFrame) -> int:
        return overlap(train[KEY_COLUMN].tolist(), eval_rows[KEY_COLUMN].tolist())

    def estimator(self, task: str, params: dict[str, Any]) -> StoreHead:
        return make_pair_head(task, **{**params, "pair_cols": (self.a, self.b)})

    def summary(self, examples: int, train_examples: int, head: StoreHead) -> dict[str, Any]:
        return {"pairs": examples, "train_pairs": train_examples,
                "pair_columns": [self.a, self.b]}

    def predictions(self, store: Store, head: StoreHead, rows: pd.DataFrame, label_col: str,
                    run: int) -> pd.DataFrame:
        out = pd.DataFrame({KEY_COLUMN: rows[KEY_COLUMN].to_numpy()})
        for c in (self.a, self.b):
            if c in rows.columns:
                out[c] = rows[c].astype(str).to_numpy()
        out["gold"] = rows[label_col].astype(str).to_numpy()
        if head.task == "classification":
            out["run"] = run
            proba = np.asarray(head.predict_proba(store, rows), dtype=np.float64)  # type: ignore[attr-defined]
            return with_probabilities(out, proba, [str(c) for c in head.classes_])  # type: ignore[attr-defined]
        out["predicted"] = np.asarray(head.predict(store, rows)).astype(str)
        out["run"] = run
        return out

    def prediction_table(self, store: Store, head: StoreHead, rows: pd.DataFrame,
                         top_k: int | None = None) -> pd.DataFrame:
        out = rows.copy()
        data: Any = rows if all(c in rows.columns for c in PAIR_KEY_COLUMNS) else \
            list(zip(rows[self.a].astype(str), rows[self.b].astype(str), strict=True))
        return with_predictions(out, store, head, data, top_k)


def with_predictions(out: pd.DataFrame, store: Store, head: StoreHead, data: Any,
                     top_k: int | None) -> pd.DataFrame:
    """`out` with the head's `prediction` for `data` and, for classifiers, `p_CLASS` per class
    or, with `top_k`, `label_1, p_1, ... label_K, p_K`: what `predict` prints per example."""
    if head.task == "regression":
        out["prediction"] = head.predict(store, data)
        return out
    proba = np.asarray(head.predict_proba(store, data), dtype=np.float64)  # type: ignore[attr-defined]
    classes = list(head.classes_)  # type: ignore[attr-defined]
    out["prediction"] = [classes[i] for i in proba.argmax(axis=1)]
    if top_k is None:
        for i, c in enumerate(classes):
            out[f"p_{c}"] = proba[:, i].round(6)
        return out
    order = np.argsort(-proba, axis=1, kind="stable")[:, :min(top_k, len(classes))]
    for j in range(order.shape[1]):
        out[f"label_{j + 1}"] = [classes[i] for i in order[:, j]]
        out[f"p_{j + 1}"] = proba[np.arange(len(proba)), order[:, j]].round(6)
    return out


def with_probabilities(frame: pd.DataFrame, proba: np.ndarray, classes: list[str]
                       ) -> pd.DataFrame:
    """`predicted` and what ranks likely label errors: the gold label's probability (0 for a
    label the head never learned), the predicted label's, and the margin between them."""
    best = proba.argmax(axis=1)
    index = {c: i for i, c in enumerate(classes)}
    gold = frame["gold"].astype(str).tolist()
    p_gold = np.array([proba[r, index[g]] if g in index else 0.0 for r, g in enumerate(gold)])
    p_pred = proba[np.arange(len(proba)), best]
    out = frame.copy()
    out.insert(out.columns.get_loc("gold") + 1, "predicted", [classes[i] for i in best])
    out["p_gold"] = p_gold.round(6)
    out["p_predicted"] = p_pred.round(6)
    out["margin"] = (p_pred - p_gold).round(6)
    return out[[c for c in out.columns if c != "run"] + ["run"]]


TEXT = TextUnit()


def unit_for(store: Store, dataset: str, unit: Unit) -> Unit:
    """The unit a dataset's rows are: a pair dataset's pairs when no other unit was asked
    for."""
    entry = store.manifest.datasets.get(dataset)
    if unit is TEXT and entry is not None and entry.pair_columns:
        return PairUnit(*entry.pair_columns)
    return unit


def unit_of(head: StoreHead) -> Unit:
    """The unit a fitted or loaded head reads."""
    if isinstance(head, SequenceClassifier):
        return SequenceUnit(head.group_by, head.order_by, head.time_col)
    first = getattr(head, "members_", [head])[0]
    if isinstance(first, PairEstimator):
        return PairUnit(*first.text_columns_)
    return TEXT
