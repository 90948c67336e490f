"""Evaluation protocols around one configuration, for every unit of example (a text, a
sequence of texts): a train/eval split, stratified K-fold cross-validation, or few-shot sampling
repeated R times; what `fit-head`, `compare`, `probe-layers` and `--auto` run. A sequence's rows
stay together in every split and fold.

Bad data is refused before any training (missing or NaN labels, a single class, labels seen only
in evaluation); texts present in both train and eval are counted and reported, not hidden.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from featstore.heads.base import StoreHead
from featstore.heads.errors import HeadError
from featstore.heads.labels import LabelMap, check_classes, regression_targets, unseen_labels
from featstore.heads.metrics import summarize
from featstore.heads.splits import few_shot, kfold, stratified_folds
from featstore.heads.training_data import default_training_dataset
from featstore.heads.units import TEXT, Examples, Unit, unit_for
from featstore.store import Store

DEFAULT_CV = 5


@dataclass
class EvaluationPlan:
    """Rows to train on, rows to evaluate on (or folds), and rows for early stopping, of one
    unit of example; `examples`: the training rows as examples."""

    train: pd.DataFrame
    train_name: str
    label_col: str
    eval: pd.DataFrame | None = None
    eval_name: str | None = None
    valid: pd.DataFrame | None = None
    cv: int | None = None
    protocol: str = ""
    overlap: int = 0
    unit: Unit = TEXT
    examples: Examples | None = field(default=None, repr=False)
    eval_examples: int | None = None
    allow_unseen: bool = False  # evaluation labels the training rows never show: errors

    def training_examples(self) -> Examples:
        if self.examples is None:
            self.examples = self.unit.examples(self.train, self.label_col,
                                               f"dataset {self.train_name!r}")
        return self.examples


@dataclass
class ProtocolResult:
    """A configuration's scores under a plan: the mean and spread over runs, each run's
    metrics, the head kept (`heads`: every run's fitted estimator, the kept refit first when
    there is one), and with `keep_predictions` every run's predictions."""

    metrics: dict[str, float]
    runs: list[dict[str, float]]
    head: StoreHead
    plan: EvaluationPlan
    train_seconds: float
    notes: list[str] = field(default_factory=list)
    predictions: pd.DataFrame | None = None  # with keep_predictions: id, gold, predicted, run
    heads: list[StoreHead] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        p = self.plan
        examples = len(p.training_examples())
        out = {"metrics": self.metrics, "runs": len(self.runs), "protocol": p.protocol,
               "train": p.train_name, "eval": p.eval_name, "train_rows": len(p.train),
               "eval_rows": None if p.eval is None else len(p.eval), "overlap": p.overlap,
               "train_seconds": round(self.train_seconds, 3)}
        return {**out, **p.unit.summary(examples + (p.eval_examples or 0), examples,
                                       self.head)}


def _reindexed(df: pd.DataFrame) -> pd.DataFrame:
    return df.reset_index(drop=True)


def plan_evaluation(store: Store, train: str | None = None,
                    eval: str | None = None,  # noqa: A002
                    cv: int | None = None, label_col: str | None = None,
                    task: str = "classification", unit: Unit = TEXT,
                    allow_unseen_labels: bool = False) -> EvaluationPlan:
    """Decide train/eval rows: --eval, else the split column, else stratified K-fold CV.
    Evaluation labels the training rows never show are refused, or with `allow_unseen_labels` scored
    as errors (and counted in the result's notes)."""
    train_name = train or default_training_dataset(store)
    unit = unit_for(store, train_name, unit)
    if task not in unit.tasks:
        raise HeadError(f"{unit.name} heads do not learn --task {task}")
    where = f"dataset {train_name!r}"
    df, col = unit.with_labels(store.dataset(train_name), label_col, where)
    if eval is not None and cv is not None:
        raise HeadError("use either --eval or --cv, not both")
    if cv is not None and cv < 2:
        raise HeadError(f"--cv needs at least 2 folds, got {cv}")
    parts = unit.split(df, where) if eval is None and cv is None else None
    if eval is not None:
        ev, _ = unit.with_labels(store.dataset(eval), col, f"dataset {eval!r}")
        split = unit.split(df, where)
        tr = split["train"] if split is not None else df
        p = EvaluationPlan(_reindexed(tr), train_name, col, _reindexed(ev), eval,
                           protocol=f"eval on {eval}{unit.describe_eval(ev)}", unit=unit)
    elif parts is not None and (len(parts["test"]) or len(parts["dev"])):
        has_test = len(parts["test"]) > 0
        ev = parts["test"] if has_test else parts["dev"]
        valid = parts["dev"] if has_test and len(parts["dev"]) and unit.dev_for_early_stopping \
            else None
        name = "test" if has_test else "dev"
        p = EvaluationPlan(_reindexed(parts["train"]), train_name, col, _reindexed(ev),
                           f"{train_name}:{name}", None if valid is None else _reindexed(valid),
                           protocol=f"train split -> {name} split"
                           + (" (dev for torch early stopping)" if valid is not None else "")
                           + unit.describe_eval(ev), unit=unit)
    else:
        k = DEFAULT_CV if cv is None else cv
        tr = parts["train"] if parts is not None else df
        p = EvaluationPlan(_reindexed(tr), train_name, col, cv=k,
                           protocol=unit.describe_cv(k, task), unit=unit)
    p.allow_unseen = allow_unseen_labels
    _check_labels(p, task)
    if p.eval is not None:
        p.overlap = unit.overlap(p.train, p.eval)
    return p


def _check_labels(p: EvaluationPlan, task: str) -> None:
    """Labels every example has, the classes a classifier needs, no class seen only in
    evaluation (folds are checked with the estimator, by `check_protocol`)."""
    col = p.label_col
    train = p.training_examples()
    ev = None if p.eval is None else p.unit.examples(p.eval, col, f"{p.eval_name}")
    if ev is not None:
        p.eval_examples = len(ev)
    if task == "regression":
        regression_targets(train.labels, col, f"dataset {p.train_name!r}")
        return
    labels = LabelMap.fit(train.labels)
    check_classes(labels, f"dataset {p.train_name!r}")
    if ev is not None:
        labels.encode(ev.labels, f"{p.eval_name}", p.allow_unseen)


def trials(p: EvaluationPlan, task: str, shots: int | None, repeats: int, seed: int
           ) -> list[tuple[np.ndarray, pd.DataFrame]]:
    """(training example indices, eval rows) pairs."""
    ex = p.training_examples()
    n = len(ex)
    y = None
    if task == "classification":
        y = LabelMap.fit(ex.labels).encode(ex.labels, "train")
    if p.cv:
        folds = (stratified_folds(y, p.cv, seed) if y is not None
                 else kfold(n, p.cv, seed))
        base = [(tr, ex.rows_of(te)) for tr, te in folds]
    elif p.eval is not None:
        base = [(np.arange(n), p.eval)]
    else:
        raise HeadError("the plan has neither evaluation rows nor folds")
    if not shots:
        return base
    if y is None:
        raise HeadError("--shots samples examples per label; it needs --task classification")
    out = []
    for tr, ev in base:
        for r in range(repeats):
            out.append((tr[few_shot(y[tr], shots, seed + r)], ev))
    return out


def check_protocol(store: Store, p: EvaluationPlan, estimator: Callable[[], StoreHead],
                   task: str = "classification", shots: int | None = None, repeats: int = 1,
                   seed: int = 0) -> list[tuple[np.ndarray, pd.DataFrame]]:
    """Everything that can be refused before any training (the estimator's parameters, rows
    the store lacks, folds a class cannot fill, few-shot settings); returns the runs' (training
    examples, eval rows)."""
    if shots is not None and shots < 1:
        raise HeadError(f"--shots must be at least 1, got {shots}")
    if repeats < 1:
        raise HeadError(f"--repeats must be at least 1, got {repeats}")
    probe = estimator()
    probe.check_inputs(store, p.train, f"dataset {p.train_name!r}")
    if p.eval is not None:
        probe.check_inputs(store, p.eval, f"{p.eval_name}")
    return trials(p, task, shots, repeats, seed)


def unit_estimator(p: EvaluationPlan, params: dict[str, Any] | None, task: str, seed: int
                   ) -> Callable[[], StoreHead]:
    """Fresh estimators of the plan's unit for `params`, with its label column and `seed`."""
    full = {**(params or {}), "label_col": p.label_col, "seed": seed}
    return lambda: p.unit.estimator(task, full)


def run_protocol(store: Store, p: EvaluationPlan, params: dict[str, Any] | None = None,
                 task: str = "classification", shots: int | None = None, repeats: int = 1,
                 seed: int = 0, progress: Any = None, refit: bool = True,
                 keep_predictions: bool = False, *,
                 estimator: Callable[[], StoreHead] | None = None,
                 fit_args: Callable[[pd.DataFrame | None], dict[str, Any]] | None = None
                 ) -> ProtocolResult:
    """Fit and score one configuration under a plan; returns the head to keep (fitted on all
    training rows for CV, on the first sample for few-shot) and mean/std metrics; with
    `keep_predictions` (classification), every run's predictions on its evaluation rows.

    The estimator is the plan's unit's for `params` (with the plan's label column and `seed`),
    or whatever `estimator()` builds; `fit_args(eval_rows)` adds arguments to each fit (None:
    the refit on all training rows)."""
    if estimator is None:
        estimator = unit_estimator(p, params, task, seed)
    runs, seconds, heads, predicted = [], 0.0, [], []
    unseen: set = set()
    unseen_rows = 0
    ex = p.training_examples()
    for i, (tr_idx, ev) in enumerate(check_protocol(store, p, estimator, task, shots, repeats,
                                                    seed)):
        head = estimator()
        use_valid = p.valid if not shots else None
        extra = {**({"valid": use_valid} if use_valid is not None else {}),
                 **(fit_args(ev) if fit_args is not None else {})}
        t0 = time.perf_counter()
        head.fit(store, ex.rows_of(tr_idx), **extra)
        seconds += time.perf_counter() - t0
        runs.append(head.evaluate(store, ev, allow_unseen_labels=p.allow_unseen))
        if p.allow_unseen and task == "classification":
            gold = p.unit.examples(ev, p.label_col, "the evaluation rows").labels
            new = unseen_labels(head.labels_, gold)  # type: ignore[attr-defined]
            unseen.update(new)
            unseen_rows += int(gold.isin(new).sum())
        if keep_predictions and task == "classification":
            predicted.append(p.unit.predictions(store, head, ev, p.label_col, i))
        heads.append(head)
        if progress is not None:
            progress.update(1)
    refitted = bool(p.cv and not shots and refit)
    if refitted:
        keep = estimator()
        keep.fit(store, p.train, **(fit_args(None) if fit_args is not None else {}))
        heads.insert(0, keep)
    notes = heads[0].protocol_notes(p, refitted, heads[1] if refitted else heads[0])
    if p.overlap:
        what = "pair(s)" if p.unit.name == "pair" else "text(s)"
        notes.append(f"{p.overlap} evaluation {what} also occur in the training rows")
    if unseen_rows:
        shown = ", ".join(map(repr, sorted(unseen, key=str)[:5])) + \
            (" ..." if len(unseen) > 5 else "")
        notes.append(f"{unseen_rows} evaluation example(s)" + (f" over {len(runs)} runs"
                     if len(runs) > 1 else "") + f" carry {len(unseen)} label(s) the training "
                     f"rows never show ({shown}): scored as errors")
    return ProtocolResult(summarize(runs), runs, heads[0], p, seconds, notes,
                          pd.concat(predicted, ignore_index=True) if predicted else None, heads)
