"""Logistic regression heads (scikit-learn), with the L2 strength chosen as SentEval does.

Without an explicit C, each candidate C is scored by stratified inner cross-validation on the
training rows only, and the best is refitted on all of them. The fitted model is kept as plain
arrays (coef_, intercept_, classes_) so it can be saved without pickle and rebuilt exactly.

Speed on two cores: BLAS runs single-threaded (two BLAS threads per fit fight each other and the
fits run 5-10x slower), the inner folds run in parallel threads, and each fold walks the C grid
from strong to weak regularisation with warm starts.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from featstore.heads.splits import inner_folds

C_GRID = (0.01, 0.1, 1.0, 10.0)
INNER_FOLDS = 3


def _model(c: float, max_iter: int, seed: int, warm: bool = False) -> LogisticRegression:
    return LogisticRegression(C=c, max_iter=max_iter, random_state=seed, warm_start=warm)


def fit_logreg(x: np.ndarray, y: np.ndarray, c: float | None = None, max_iter: int = 100,
               seed: int = 0, grid: tuple[float, ...] = C_GRID) -> tuple[LogisticRegression,
                                                                           dict]:
    """Fit on all rows; returns the model and {"C": chosen, "cv": {C: inner accuracy}}."""
    info: dict = {}
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if c is None:
            c, info["cv"] = choose_c(x, y, grid, max_iter, seed)
        model = _model(c, max_iter, seed).fit(x, y)
    info["C"] = float(c)
    return model, info


def choose_c(x: np.ndarray, y: np.ndarray, grid: tuple[float, ...], max_iter: int,
             seed: int) -> tuple[float, dict[str, float]]:
    """Inner stratified CV accuracy for each C; ties go to the stronger regularisation."""
    splits = inner_folds(y, len(y), INNER_FOLDS, seed)
    if not splits:
        return 1.0, {}
    ordered = tuple(sorted(grid))

    def path(split: tuple[np.ndarray, np.ndarray]) -> list[float]:
        tr, te = split
        return c_path(x[tr], y[tr], x[te], y[te], ordered, max_iter, seed)

    workers = max(1, min(len(splits), os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        per_fold = list(pool.map(path, splits))
    scores = {c: float(np.mean([f[i] for f in per_fold])) for i, c in enumerate(ordered)}
    best = max(grid, key=lambda c: (round(scores[c], 6), -c))
    return float(best), {str(c): s for c, s in scores.items()}


def c_path(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
           grid: tuple[float, ...], max_iter: int, seed: int) -> list[float]:
    """Test accuracy for each C of `grid` (ascending: strong to weak regularisation), one
    model warm-started along the path."""
    m = _model(grid[0], max_iter, seed, warm=True)
    out = []
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for c in grid:
            m.set_params(C=c)
            m.fit(x_train, y_train)
            out.append(float((m.predict(x_test) == y_test).mean()))
    return out


def logreg_state(model: LogisticRegression) -> dict[str, np.ndarray]:
    return {
        "logreg.coef": np.asarray(model.coef_),
        "logreg.intercept": np.asarray(model.intercept_),
        "logreg.classes": np.asarray(model.classes_, dtype=np.int64),
    }


def logreg_from_state(tensors: dict[str, np.ndarray], c: float) -> LogisticRegression:
    """Rebuild a fitted LogisticRegression from its arrays: predictions match the original."""
    model = LogisticRegression(C=c)
    model.coef_ = np.asarray(tensors["logreg.coef"])
    model.intercept_ = np.asarray(tensors["logreg.intercept"])
    model.classes_ = np.asarray(tensors["logreg.classes"], dtype=np.int64)
    model.n_features_in_ = model.coef_.shape[1]
    model.n_iter_ = np.zeros(1, dtype=np.int32)
    return model
