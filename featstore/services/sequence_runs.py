"""Sequence heads as the command line runs them, for notebooks too: the data plan (rows grouped
into labelled sequences, a split kept whole per group or folds grouped by sequence), one
configuration fitted, scored and saved, a ranking of sequence heads, and predictions per group.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featstore.featurize.corpus import open_corpus, read_rows
from featstore.featurize.errors import CorpusError
from featstore.heads.artifacts import read_head_json, refuse_existing_head
from featstore.heads.errors import HeadError
from featstore.heads.inputs import find_by_fingerprint
from featstore.heads.labels import LabelMap, check_classes, label_column
from featstore.heads.metrics import classification_scores, summarize
from featstore.heads.protocols import default_training_dataset
from featstore.heads.sequence_estimator import SequenceClassifier, is_sequence_head
from featstore.heads.sequences import (
    Sequences,
    group_rows,
    grouped_folds,
    labels_from_table,
    split_per_group,
)
from featstore.heads.splits import DEV_SPLITS, SPLIT_COLUMN, TEST_SPLITS, TRAIN_SPLITS
from featstore.services.datasets import dataset_for
from featstore.services.featurizing import Say, featurize_missing
from featstore.store import (
    KEY_COLUMN,
    Store,
    check_name,
    clean_text,
    default_store_path,
    open_store,
)

DEFAULT_CV = 5


@dataclass
class SequencePlan:
    """Rows and their labelled sequences; which sequences train and which evaluate (a split,
    an eval dataset, or grouped folds)."""

    rows: pd.DataFrame
    seqs: Sequences
    dataset: str
    group_by: str
    order_by: str | None
    time_col: str | None
    train: np.ndarray  # sequence indices that train (all of them under CV)
    eval_rows: pd.DataFrame | None = None
    eval_seqs: Sequences | None = None
    test: np.ndarray | None = None  # sequence indices that evaluate, for a split in the data
    cv: int | None = None
    protocol: str = ""

    def labels_of(self, idx: np.ndarray) -> dict:
        assert self.seqs.labels is not None
        return {self.seqs.groups[i]: self.seqs.labels.iloc[i] for i in idx}

    def rows_of(self, idx: np.ndarray) -> pd.DataFrame:
        keep = np.concatenate([self.seqs.rows[i] for i in idx]) if len(idx) else []
        return self.rows.iloc[np.sort(keep)].reset_index(drop=True)


def read_rows_file(path: str | Path, what: str) -> pd.DataFrame:
    """A small table file (CSV, TSV, JSONL, Parquet), read as featurize reads a corpus (CSV
    cells as text), so a group or order value means the same here as in a dataset."""
    p = Path(path)
    if not p.is_file():
        raise HeadError(f"{what} {str(path)!r} is not a file")
    suffix = p.suffix.lower()
    fmt = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
           ".pq": "parquet", ".tsv": "tsv"}.get(suffix, "csv")
    try:
        return read_rows(p, fmt)
    except CorpusError as exc:
        raise HeadError(f"{what} {exc}") from None


def _labelled(rows: pd.DataFrame, group_by: str, order_by: str | None, time_col: str | None,
              label_col: str | None, labels: pd.DataFrame | None, where: str) -> Sequences:
    if labels is None:
        col = label_column(rows, label_col, where)
        return group_rows(rows, group_by, order_by, time_col, col, where)
    seqs = group_rows(rows, group_by, order_by, time_col, None, where)
    col = label_column(labels, label_col, "the --labels file")
    seqs.labels = labels_from_table(labels, seqs.groups, group_by, col, "the --labels file",
                                    strict=True)
    return seqs


def plan_sequences(store_path: str | Path | None, train: str | None, group_by: str,
                   order_by: str | None = None, time_col: str | None = None,
                   eval: str | None = None,  # noqa: A002
                   cv: int | None = None, label_col: str | None = None,
                   labels: str | Path | None = None, seed: int = 0, model: str | None = None,
                   progress: bool = True, say: Say | None = None) -> tuple[Store, SequencePlan]:
    """The store and the plan: --eval, else a split column constant per group, else grouped
    stratified K-fold CV. Corpus files are featurized first; bad groups refused in one line."""
    if eval is not None and cv is not None:
        raise HeadError("use either --eval or --cv, not both")
    label_table = read_rows_file(labels, "--labels") if labels is not None else None
    for value in (train, eval):  # a file's sequences are checked before it is featurized
        _check_sequence_file(store_path, value, group_by, order_by, time_col, label_col,
                             label_table)
    train_name = dataset_for(store_path, train, model, False, progress, say)
    eval_name = dataset_for(store_path, eval, model, False, progress, say)
    store = open_store(store_path)
    name = train_name or default_training_dataset(store)
    rows = store.dataset(name)
    where = f"dataset {name!r}"
    seqs = _labelled(rows, group_by, order_by, time_col, label_col, label_table, where)
    y = _check_sequence_labels(seqs, where)
    plan = SequencePlan(rows, seqs, name, group_by, order_by, time_col, np.arange(len(seqs)))
    if eval_name is not None:
        plan.eval_rows = store.dataset(eval_name)
        ewhere = f"dataset {eval_name!r}"
        plan.eval_seqs = _labelled(plan.eval_rows, group_by, order_by, time_col, label_col,
                                   label_table, ewhere)
        assert plan.eval_seqs.labels is not None
        LabelMap.fit(seqs.labels).encode(plan.eval_seqs.labels, ewhere)
        plan.protocol = f"eval on {eval_name} ({len(plan.eval_seqs)} sequences)"
        return store, plan
    split = None
    if cv is None and SPLIT_COLUMN in rows.columns:
        split = split_per_group(rows[SPLIT_COLUMN], seqs.rows, seqs.groups, where)
    if split is not None and np.isin(split, TEST_SPLITS + DEV_SPLITS).any():
        plan.train = np.flatnonzero(np.isin(split, TRAIN_SPLITS))
        role = "test" if np.isin(split, TEST_SPLITS).any() else "dev"
        plan.test = np.flatnonzero(np.isin(split, TEST_SPLITS if role == "test"
                                           else DEV_SPLITS))
        if not len(plan.train):
            raise HeadError(f"{where}: no group is in the 'train' split")
        plan.protocol = f"train split -> {role} split ({len(plan.test)} sequences)"
        return store, plan
    plan.cv = cv or DEFAULT_CV
    grouped_folds(y, plan.cv, seed)  # refuse too few sequences per class now
    plan.protocol = f"{plan.cv}-fold stratified CV grouped by {group_by}"
    return store, plan


def _check_sequence_file(store_path: str | Path | None, value: str | None, group_by: str,
                         order_by: str | None, time_col: str | None, label_col: str | None,
                         labels: pd.DataFrame | None) -> None:
    """Group a corpus file's rows with text as its dataset would be grouped, so a bad group,
    order or time column is refused before the file is featurized into the store."""
    root = default_store_path(store_path)
    if value is None or not Path(value).is_file() or (
            (root / "manifest.json").is_file() and value in open_store(root).manifest.datasets):
        return
    try:
        text_col = open_corpus(value).text_column
    except CorpusError:
        return  # featurize says what is wrong with the file itself
    rows = read_rows_file(value, "--train")
    rows = rows[[clean_text(v) is not None for v in rows[text_col].tolist()]]
    rows = rows.reset_index(drop=True).assign(**{KEY_COLUMN: ""})
    _labelled(rows, group_by, order_by, time_col, label_col, labels, str(value))


def _check_sequence_labels(seqs: Sequences, where: str) -> np.ndarray:
    assert seqs.labels is not None
    labels = LabelMap.fit(seqs.labels)
    y = labels.encode(seqs.labels, where)
    check_classes(y, labels, where)
    return y


@dataclass
class SequenceResult:
    metrics: dict[str, float]
    runs: list[dict[str, float]]
    head: SequenceClassifier
    plan: SequencePlan
    train_seconds: float
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        p = self.plan
        return {"metrics": self.metrics, "runs": len(self.runs), "protocol": p.protocol,
                "train": p.dataset, "sequences": len(p.seqs), "train_sequences": len(p.train),
                "train_rows": len(p.rows), "train_seconds": round(self.train_seconds, 3),
                "seq_head": self.head.kind_, "inner_cv": self.head.fit_info_.get("inner_cv")}


def _sequence_trials(p: SequencePlan, seed: int) -> list[tuple[np.ndarray, pd.DataFrame, dict]]:
    """(train sequence indices, eval rows, eval labels by group) per run."""
    if p.eval_rows is not None:
        assert p.eval_seqs is not None and p.eval_seqs.labels is not None
        labels = dict(zip(p.eval_seqs.groups, p.eval_seqs.labels.tolist(), strict=True))
        return [(p.train, p.eval_rows, labels)]
    if p.test is not None:
        return [(p.train, p.rows_of(p.test), p.labels_of(p.test))]
    assert p.cv is not None and p.seqs.labels is not None
    y = LabelMap.fit(p.seqs.labels).encode(p.seqs.labels, "train")
    return [(tr, p.rows_of(te), p.labels_of(te)) for tr, te in grouped_folds(y, p.cv, seed)]


def make_sequence_head(p: SequencePlan, params: dict[str, Any], seed: int) -> SequenceClassifier:
    return SequenceClassifier(**{**params, "group_by": p.group_by, "order_by": p.order_by,
                                 "time_col": p.time_col, "seed": seed})


def run_sequence_protocol(store: Store, p: SequencePlan, params: dict[str, Any], seed: int = 0,
                          progress: Any = None, refit: bool = True) -> SequenceResult:
    """Fit and score one configuration under the plan; returns the head to keep (refitted on
    every training sequence under CV) and mean/std metrics over the runs."""
    make_sequence_head(p, params, seed).validate_params()
    runs, seconds, keep = [], 0.0, None
    for tr, ev_rows, ev_labels in _sequence_trials(p, seed):
        head = make_sequence_head(p, params, seed)
        t0 = time.perf_counter()
        head.fit(store, p.rows_of(tr), p.labels_of(tr))
        seconds += time.perf_counter() - t0
        table = head.predict_table(store, ev_rows)
        truth = head.labels_.encode(pd.Series([ev_labels[g] for g in table[p.group_by]]),
                                    "evaluation")
        pred = head.labels_.encode(table["prediction"], "evaluation")
        runs.append(classification_scores(truth, pred))
        keep = head if keep is None else keep
        if progress is not None:
            progress.update(1)
    notes = []
    if p.cv and refit:
        keep = make_sequence_head(p, params, seed)
        keep.fit(store, p.rows, p.labels_of(p.train))
        notes.append(f"metrics are the mean over {p.cv} folds; the saved head is refitted on "
                     "every training sequence")
    assert keep is not None
    return SequenceResult(summarize(runs), runs, keep, p, seconds, notes)


@dataclass
class SavedSequenceHead:
    name: str
    path: Path
    result: SequenceResult


def fit_sequences_and_save(store: Store, plan: SequencePlan, params: dict[str, Any],
                           seed: int = 0, name: str | None = None,
                           progress: Any = None, overwrite: bool = False) -> SavedSequenceHead:
    """Run one configuration and save the head it keeps as `name` (default
    DATASET-seq-KIND); an existing head of that name is refused before any training, unless
    `overwrite`."""
    name = name or default_sequence_head_name(plan, params)
    refuse_existing_head(store, name, overwrite)
    result = run_sequence_protocol(store, plan, params, seed, progress)
    path = result.head.save(store, name, metrics=result.metrics,
                            extra={"evaluation": result.summary()}, overwrite=overwrite)
    return SavedSequenceHead(name, path, result)


def default_sequence_head_name(plan: SequencePlan, params: dict[str, Any]) -> str:
    return check_name(f"{plan.dataset}-seq-{params.get('seq_head', 'auto')}", "head")


@dataclass
class RankedSequenceHead:
    name: str
    params: dict[str, Any]
    result: SequenceResult


def compare_sequence_heads(store: Store, plan: SequencePlan, heads: tuple[str, ...],
                           params: dict[str, Any], seed: int = 0,
                           progress: Any = None) -> list[RankedSequenceHead]:
    """Each sequence head (the mean, last and mean-last baselines among them) under the same
    plan and folds, best accuracy first."""
    ranked = []
    for kind in heads:
        p = {**params, "seq_head": kind}
        ranked.append(RankedSequenceHead(kind, p, run_sequence_protocol(store, plan, p, seed,
                                                                        refit=False)))
        if progress is not None:
            progress.update(1)
    return sorted(ranked, key=lambda e: -e.result.metrics["accuracy"])


def is_sequence_head_name(store: Store, name: str) -> bool:
    return is_sequence_head(read_head_json(store, name))


def predict_sequences(store: Store, head: SequenceClassifier, value: str,
                      progress: bool = False, say: Say | None = None,
                      name: str = "the head") -> tuple[pd.DataFrame, int]:
    """One row per group of a dataset or a file of rows (with the group column): its length,
    prediction and class probabilities; texts the store lacks are encoded first with the
    head's own encoder. Also returns how many rows of a file had no text (left out, as
    featurize leaves them out)."""
    head.check_fitted()
    skipped = 0
    if value in store.manifest.datasets:
        rows = store.dataset(value)
    else:
        rows = read_rows_file(value, "input")
        if "text" not in rows.columns:
            raise HeadError(f"{value} has no 'text' column (columns: "
                            f"{', '.join(map(str, rows.columns))})")
        has_text = [clean_text(v) is not None for v in rows["text"].tolist()]
        skipped = len(has_text) - sum(has_text)
        if skipped:  # as featurize does: a row without text is no message
            if say is not None:
                say(f"skipped {skipped} input row(s) without text")
            rows = rows[has_text].reset_index(drop=True)
            if rows.empty:
                raise HeadError(f"{value} has no texts in column 'text'")
        layout = head.inputs_.layout
        find_by_fingerprint(store, layout.encoder_fingerprint, name)
        texts = rows["text"].astype(str).tolist()
        featurize_missing(store, texts, layout.encoder_fingerprint, layout.features,
                          progress=progress, say=say)
    return head.predict_table(store, rows), skipped
