"""What a classifier gets wrong, per class: precision, recall, F1 and support for each label, the
confusion matrix, the pairs of labels most often confused, and the misclassified rows with the
gold label's probability and the margin (the surest mistakes first: likely label errors). With
77 intents, the mean hides which ones fail."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from featstore.store import KEY_COLUMN


@dataclass
class ClassReport:
    per_class: pd.DataFrame  # label, precision, recall, f1, support (fractions), worst F1 first
    matrix: np.ndarray  # [true, predicted] counts, in `classes` order
    classes: list[str]
    # text (when known), gold, predicted, p_gold, p_predicted, margin, run: the surest
    # mistakes (likely label errors) first
    errors: pd.DataFrame
    rows: int  # predictions counted (every run's evaluation rows)
    pairs: pd.DataFrame  # gold, predicted, count, share_of_gold: the most confused pairs first


def class_report(predictions: pd.DataFrame, texts: dict[str, str] | None = None
                 ) -> ClassReport:
    """`predictions` has columns gold, predicted, run and an id of each example (`_key` for a
    text; one row per evaluated example and run); `texts` maps keys to their text for the list
    of errors."""
    gold = predictions["gold"].astype(str).to_numpy()
    pred = predictions["predicted"].astype(str).to_numpy()
    classes = sorted(set(gold) | set(pred))
    p, r, f, n = precision_recall_fscore_support(gold, pred, labels=classes, zero_division=0)
    per_class = pd.DataFrame({"label": classes, "precision": p, "recall": r, "f1": f,
                              "support": n}).sort_values(["f1", "label"], kind="stable")
    matrix = confusion_matrix(gold, pred, labels=classes)
    wrong = predictions[gold != pred].copy()
    if texts is not None and KEY_COLUMN in wrong.columns:
        wrong.insert(0, "text", [texts.get(k, "") for k in wrong[KEY_COLUMN]])
    if "margin" in wrong.columns:
        wrong = wrong.sort_values("margin", ascending=False, kind="stable")
    errors = wrong.drop(columns=[KEY_COLUMN], errors="ignore").reset_index(drop=True)
    return ClassReport(per_class.reset_index(drop=True), matrix, classes, errors,
                       len(predictions), confused_pairs(matrix, classes))


def confused_pairs(matrix: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Every (gold, predicted) pair of different labels that occurred, most frequent first:
    its count and its share of the gold label's rows."""
    support = matrix.sum(axis=1)
    rows = [(classes[i], classes[j], int(matrix[i, j]), matrix[i, j] / max(support[i], 1))
            for i, j in zip(*np.nonzero(matrix), strict=True) if i != j]
    table = pd.DataFrame(rows, columns=["gold", "predicted", "count", "share_of_gold"])
    return table.sort_values(["count", "share_of_gold", "gold", "predicted"],
                             ascending=[False, False, True, True], kind="stable"
                             ).reset_index(drop=True)
