"""Scores reported for a head: accuracy and macro-F1, or RMSE, Pearson and Spearman.

Kept as plain fractions (accuracy 0.94, not 94.0); tables format them for people. scipy and
scikit-learn load when scores are computed, so listing heads stays fast.
"""

from __future__ import annotations

import numpy as np

from featstore.heads.kinds import primary_metric  # noqa: F401  (re-exported)

CLASSIFICATION_METRICS = ("accuracy", "macro_f1")
REGRESSION_METRICS = ("rmse", "pearson", "spearman")


def classification_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score  # loaded when scores are computed

    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def positive_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """F1 of the positive class of a two-class task: class index 1 (the second label in sorted
    order: 1 for 0/1 labels)."""
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, labels=[1], average="macro", zero_division=0))


def regression_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    from scipy import stats  # loaded when scores are computed

    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    rmse = float(np.sqrt(np.mean((y_true - y_pred) ** 2)))
    constant = np.std(y_true) == 0 or np.std(y_pred) == 0
    pearson = float("nan") if constant else float(stats.pearsonr(y_true, y_pred)[0])
    spearman = float("nan") if constant else float(stats.spearmanr(y_true, y_pred)[0])
    return {"rmse": rmse, "pearson": pearson, "spearman": spearman}


def scores(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    if task == "regression":
        return regression_scores(y_true, y_pred)
    return classification_scores(y_true, y_pred)


def summarize(runs: list[dict[str, float]]) -> dict[str, float]:
    """Mean and standard deviation over repeated runs: {name: mean, name_std: std}."""
    out: dict[str, float] = {}
    for name in runs[0]:
        vals = np.array([r[name] for r in runs], dtype=np.float64)
        out[name] = float(np.mean(vals))
        out[f"{name}_std"] = float(np.std(vals))
    return out
