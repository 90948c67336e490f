"""Self-training: the texts a user has not labeled join the training rows under the labels a
head predicts for them most confidently, so that ten examples per class can borrow from
thousands of unlabeled ones. Their vectors are already in the store, so this costs head fits,
never an encoder pass. Whether it helps is decided on the inner folds, like everything else
`--auto` keeps: the evaluation rows are never among the unlabeled ones.

Pseudo-labels are class-balanced (each class takes its own most confident rows, in proportion
to its labeled rows; Zou et al., 2018), so that with a pool far larger than the cap a class the
first head over-predicts does not crowd out the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from featstore.heads.labels import LabelMap
from featstore.store import KEY_COLUMN, Store

# pseudo-labeled rows a class may take, as a multiple of its labeled rows: on Banking77 dev rows
# with 7-10 labeled per class, pseudo-labeling (nearly) every unlabeled row gained 1-2 points,
# only its most confident 5x gained nothing; the cap bounds the cost when the pool is huge
PSEUDO_FACTOR = 20


def pseudo_labels(probs: np.ndarray, labeled_counts: np.ndarray,
                  factor: float = PSEUDO_FACTOR) -> tuple[np.ndarray, np.ndarray]:
    """(row indices into `probs`, their classes), ascending by row: for every class, the rows
    predicted as it with the highest probability, at most `factor` x its labeled rows."""
    pred = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    picks = []
    for c in range(probs.shape[1]):
        rows = np.flatnonzero(pred == c)
        k = int(min(len(rows), factor * labeled_counts[c]))
        if k:
            picks.append(rows[np.argsort(-conf[rows], kind="stable")[:k]])
    idx = np.sort(np.concatenate(picks)) if picks else np.empty(0, dtype=np.int64)
    return idx, pred[idx]


def class_probs(head: Any, store: Store, rows: pd.DataFrame, labels: LabelMap) -> np.ndarray:
    """A fitted classifier's probabilities with columns in `labels` order (a head fitted on a
    fold may lack a class)."""
    out = head.predict_proba(store, rows)
    full = np.zeros((len(rows), len(labels.classes)), dtype=np.float32)
    cols = labels.encode(pd.Series(list(head.classes_)), "a head's classes")
    full[:, cols] = out
    return full


def with_pseudo(rows: pd.DataFrame, col: str, pool: pd.DataFrame, probs: np.ndarray,
                labels: LabelMap, counts: np.ndarray, factor: float = PSEUDO_FACTOR
                ) -> pd.DataFrame:
    """`rows` followed by the pool rows chosen by `pseudo_labels`, labeled with their class."""
    idx, cls = pseudo_labels(probs, counts, factor)
    extra = pd.DataFrame({KEY_COLUMN: pool[KEY_COLUMN].to_numpy()[idx],
                          col: labels.decode(cls)})
    return pd.concat([rows[[KEY_COLUMN, col]], extra], ignore_index=True)


def self_training_check(build: Callable[[], Any], build_grown: Callable[[], Any], store: Store,
                        rows: pd.DataFrame, col: str, folds: list[tuple[np.ndarray, np.ndarray]],
                        labels: LabelMap, codes: np.ndarray, pool: pd.DataFrame, seconds: float,
                        refit_scale: float, factor: float = PSEUDO_FACTOR
                        ) -> tuple[dict[str, Any], np.ndarray | None]:
    """Score self-training on the inner folds: on each, a head from `build` fitted on the
    fold's training rows pseudo-labels the pool, one from `build_grown` is fitted on both, and
    both score the held-out rows. Returns the record (`chosen` when self-training was strictly
    more accurate over all held-out rows) and the pool probabilities averaged over the folds'
    first heads, from which the final pseudo-labels come (no extra fit). `seconds` covers the
    check and the final refit, estimated as `refit_scale` x a fold's grown fit; when the
    first fold shows they will not fit, the check stops, unchosen."""
    start = time.perf_counter()
    plain = np.zeros(len(codes), dtype=bool)
    trained = np.zeros(len(codes), dtype=bool)
    held = np.zeros(len(codes), dtype=bool)
    pool_probs = np.zeros((len(pool), len(labels.classes)), dtype=np.float64)
    added = []
    for k, (tr, te) in enumerate(folds):
        t0 = time.perf_counter()
        fold_rows = rows.iloc[tr].reset_index(drop=True)
        held_rows = rows.iloc[te].reset_index(drop=True)
        first = build().fit(store, fold_rows)
        plain[te] = class_probs(first, store, held_rows, labels).argmax(axis=1) == codes[te]
        probs = class_probs(first, store, pool, labels)
        pool_probs += probs
        counts = np.bincount(codes[tr], minlength=len(labels.classes))
        grown = with_pseudo(fold_rows, col, pool, probs, labels, counts, factor)
        added.append(len(grown) - len(fold_rows))
        t1 = time.perf_counter()
        second = build_grown().fit(store, grown)
        refit = refit_scale * (time.perf_counter() - t1)
        trained[te] = class_probs(second, store, held_rows, labels).argmax(axis=1) == codes[te]
        held[te] = True
        need = (time.perf_counter() - t0) * (len(folds) - k - 1) + refit
        if k == 0 and time.perf_counter() - start + need > seconds:
            return {"chosen": False, "why": f"it would take about {need:.0f} s more than the "
                    "budget leaves"}, None
    before = float(plain[held].mean())
    after = float(trained[held].mean())
    record = {"method": "class-balanced pseudo-labels from the winner's most confident "
                        f"predictions, at most {factor:g}x each class's labeled rows",
              "unlabeled_rows": len(pool), "pseudo_rows_per_fold": added,
              "inner_score_without": round(before, 6), "inner_score_with": round(after, 6),
              "seconds": round(time.perf_counter() - start, 3), "chosen": after > before}
    if not record["chosen"]:
        record["why"] = "it did not beat the winner alone on the inner folds"
    return record, pool_probs / len(folds)
