"""Evaluation protocols around one head configuration: a train/eval split, stratified K-fold
cross-validation, or few-shot sampling repeated R times; what `fit-head` and `compare` run.

Bad data is refused before any training (missing or NaN labels, a single class, labels seen only
in evaluation); texts present in both train and eval are counted and reported, not hidden.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from featstore.heads.ensemble import HeadEnsemble
from featstore.heads.errors import HeadError
from featstore.heads.estimator import HeadEstimator, make_head
from featstore.heads.labels import (
    LabelMap,
    check_classes,
    check_label_values,
    label_column,
    regression_targets,
)
from featstore.heads.metrics import summarize
from featstore.heads.splits import (
    SPLIT_COLUMN,
    few_shot,
    kfold,
    overlap,
    split_rows,
    stratified_folds,
)
from featstore.store import KEY_COLUMN, Store

DEFAULT_CV = 5


@dataclass
class EvaluationPlan:
    """Rows to train on, rows to evaluate on (or folds), and rows for early stopping."""

    train: pd.DataFrame
    train_name: str
    label_col: str
    eval: pd.DataFrame | None = None
    eval_name: str | None = None
    valid: pd.DataFrame | None = None
    cv: int | None = None
    protocol: str = ""
    overlap: int = 0


@dataclass
class ProtocolResult:
    metrics: dict[str, float]
    runs: list[dict[str, float]]
    head: HeadEstimator | HeadEnsemble
    plan: EvaluationPlan
    train_seconds: float
    notes: list[str] = field(default_factory=list)
    predictions: pd.DataFrame | None = None  # with keep_predictions: _key, gold, predicted, run

    def summary(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "runs": len(self.runs), "protocol": self.plan.protocol,
                "train": self.plan.train_name, "eval": self.plan.eval_name,
                "train_rows": len(self.plan.train),
                "eval_rows": None if self.plan.eval is None else len(self.plan.eval),
                "overlap": self.plan.overlap, "train_seconds": round(self.train_seconds, 3)}


def _reindexed(df: pd.DataFrame) -> pd.DataFrame:
    return df.reset_index(drop=True)


def default_training_dataset(store: Store) -> str:
    """With no --train: the only dataset, else the only one with a split column. Never merely
    the latest (featurize train.csv then test.csv, and that would train on test)."""
    names = list(store.manifest.datasets)
    if not names:
        raise HeadError(f"store {store.root} has no datasets; run `featurize CORPUS --store "
                        f"{shlex.quote(str(store.root))}` first")
    if len(names) == 1:
        return names[0]
    with_split = [n for n in names if SPLIT_COLUMN in store.dataset(n).columns]
    if len(with_split) == 1:
        return with_split[0]
    raise HeadError(f"store {store.root} holds {len(names)} datasets ({', '.join(names)}); "
                    "name the training one with --train")


def plan_evaluation(store: Store, train: str | None = None,
                    eval: str | None = None,  # noqa: A002
                    cv: int | None = None, label_col: str | None = None,
                    task: str = "classification", seed: int = 0) -> EvaluationPlan:
    """Decide train/eval rows: --eval, else the split column, else stratified K-fold CV."""
    train_name = train or default_training_dataset(store)
    df = store.dataset(train_name)
    where = f"dataset {train_name!r}"
    col = label_column(df, label_col, where)
    parts = split_rows(df) if eval is None and cv is None else None
    if eval is not None and cv is not None:
        raise HeadError("use either --eval or --cv, not both")
    if cv is not None and cv < 2:
        raise HeadError(f"--cv needs at least 2 folds, got {cv}")
    if eval is not None:
        ev = store.dataset(eval)
        label_column(ev, col, f"dataset {eval!r}")
        split = split_rows(df)
        tr = split["train"] if split is not None else df
        p = EvaluationPlan(_reindexed(tr), train_name, col, _reindexed(ev), eval,
                           protocol=f"eval on {eval}")
    elif parts is not None and (len(parts["test"]) or len(parts["dev"])):
        has_test = len(parts["test"]) > 0
        ev = parts["test"] if has_test else parts["dev"]
        valid = parts["dev"] if has_test and len(parts["dev"]) else None
        name = "test" if has_test else "dev"
        p = EvaluationPlan(_reindexed(parts["train"]), train_name, col, _reindexed(ev),
                           f"{train_name}:{name}", None if valid is None else _reindexed(valid),
                           protocol=f"train split -> {name} split"
                           + (" (dev for torch early stopping)" if valid is not None else ""))
    else:
        k = DEFAULT_CV if cv is None else cv
        tr = parts["train"] if parts is not None else df
        protocol = f"{k}-fold stratified CV" if task == "classification" else f"{k}-fold CV"
        p = EvaluationPlan(_reindexed(tr), train_name, col, cv=k, protocol=protocol)
    _check_labels(p, task)
    if p.eval is not None:
        p.overlap = overlap(p.train[KEY_COLUMN].tolist(), p.eval[KEY_COLUMN].tolist())
    return p


def _check_labels(p: EvaluationPlan, task: str) -> None:
    col = p.label_col
    check_label_values(p.train[col], col, f"dataset {p.train_name!r}")
    if p.eval is not None:
        check_label_values(p.eval[col], col, f"{p.eval_name}")
    if task == "regression":
        regression_targets(p.train[col], col, f"dataset {p.train_name!r}")
        return
    labels = LabelMap.fit(p.train[col])
    check_classes(np.arange(len(labels.classes)), labels, f"dataset {p.train_name!r}")
    if p.eval is not None:
        labels.encode(p.eval[col], f"{p.eval_name}")


def trials(p: EvaluationPlan, task: str, shots: int | None, repeats: int, seed: int
            ) -> list[tuple[np.ndarray, pd.DataFrame]]:
    """(train row indices, eval rows) pairs."""
    n = len(p.train)
    y = None
    if task == "classification":
        y = LabelMap.fit(p.train[p.label_col]).encode(p.train[p.label_col], "train")
    if p.cv:
        folds = (stratified_folds(y, p.cv, seed) if y is not None
                 else kfold(n, p.cv, seed))
        base = [(tr, p.train.iloc[te].reset_index(drop=True)) for tr, te in folds]
    else:
        assert p.eval is not None
        base = [(np.arange(n), p.eval)]
    if not shots:
        return base
    if y is None:
        raise HeadError("--shots samples examples per label; it needs --task classification")
    out = []
    for tr, ev in base:
        for r in range(repeats):
            out.append((tr[few_shot(y[tr], shots, seed + r)], ev))
    return out


def run_predictions(store: Store, head: Any, ev: pd.DataFrame, label_col: str, run: int
                    ) -> pd.DataFrame:
    """One run's predictions on its evaluation rows (_key, gold, predicted, run), as reports
    read them."""
    return pd.DataFrame({KEY_COLUMN: ev[KEY_COLUMN].to_numpy(),
                         "gold": ev[label_col].astype(str).to_numpy(),
                         "predicted": np.asarray(head.predict(store, ev)).astype(str),
                         "run": run})


def run_protocol(store: Store, p: EvaluationPlan, params: dict[str, Any],
                 task: str = "classification", shots: int | None = None, repeats: int = 1,
                 seed: int = 0, progress: Any = None, refit: bool = True,
                 keep_predictions: bool = False) -> ProtocolResult:
    """Fit and score one configuration under a plan; returns the head to keep (fitted on all
    training rows for CV, on the first sample for few-shot) and mean/std metrics; with
    `keep_predictions` (classification), every run's predictions on its evaluation rows."""
    if shots is not None and shots < 1:
        raise HeadError(f"--shots must be at least 1, got {shots}")
    if repeats < 1:
        raise HeadError(f"--repeats must be at least 1, got {repeats}")
    params = {**params, "label_col": p.label_col, "seed": seed}
    probe = make_head(task, **params)
    probe.check_inputs(store, p.train[KEY_COLUMN].tolist(), f"dataset {p.train_name!r}")
    if p.eval is not None:
        probe.check_inputs(store, p.eval[KEY_COLUMN].tolist(), f"{p.eval_name}")
    runs, seconds, keep, predicted = [], 0.0, None, []
    for i, (tr_idx, ev) in enumerate(trials(p, task, shots, repeats, seed)):
        head = make_head(task, **params)
        rows = p.train.iloc[tr_idx].reset_index(drop=True)
        use_valid = p.valid if not shots else None
        t0 = time.perf_counter()
        head.fit(store, rows, valid=use_valid)
        seconds += time.perf_counter() - t0
        runs.append(head.evaluate(store, ev))
        if keep_predictions and task == "classification":
            predicted.append(run_predictions(store, head, ev, p.label_col, i))
        if i == 0:
            keep = head
        if progress is not None:
            progress.update(1)
    notes = []
    if p.cv and not shots and refit:
        keep = make_head(task, **params)
        keep.fit(store, p.train)
        notes.append(f"metrics are the mean over {p.cv} folds; the saved head is refitted on "
                     "all training rows")
    if p.overlap:
        notes.append(f"{p.overlap} evaluation text(s) also occur in the training rows")
    assert keep is not None
    return ProtocolResult(summarize(runs), runs, keep, p, seconds, notes,
                          pd.concat(predicted, ignore_index=True) if predicted else None)
