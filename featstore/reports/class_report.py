"""What a classifier gets wrong, per class: precision, recall, F1 and support for each label, the
confusion matrix, and the misclassified rows. With 77 intents, the mean hides which ones fail."""

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
    errors: pd.DataFrame  # text (when known), gold, predicted, run
    rows: int  # predictions counted (every run's evaluation rows)


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
    errors = wrong.drop(columns=[KEY_COLUMN], errors="ignore").reset_index(drop=True)
    return ClassReport(per_class.reset_index(drop=True), matrix, classes, errors,
                       len(predictions))
