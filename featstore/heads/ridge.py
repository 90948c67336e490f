"""Ridge regression heads (scikit-learn), the L2 strength chosen by efficient leave-one-out
cross-validation on the training rows only (RidgeCV's generalised CV), kept as plain arrays so
a saved head is rebuilt exactly without pickle."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import Ridge, RidgeCV
from threadpoolctl import threadpool_limits

ALPHA_GRID = tuple(float(a) for a in np.logspace(-2, 4, 13))


def fit_ridge(x: np.ndarray, y: np.ndarray, c: float | None = None) -> tuple[Ridge, dict]:
    """Fit on all rows (`c`: an inverse strength, alpha = 1/c; default: alpha chosen by
    leave-one-out CV); returns the model and {"alpha": chosen}."""
    with threadpool_limits(2):
        alpha = float(RidgeCV(alphas=ALPHA_GRID).fit(x, y).alpha_) if c is None else 1 / c
        model = Ridge(alpha=alpha).fit(x, y)
    return model, {"alpha": alpha}


def ridge_state(model: Ridge) -> dict[str, np.ndarray]:
    return {"ridge.coef": np.asarray(model.coef_, dtype=np.float64),
            "ridge.intercept": np.asarray(model.intercept_, dtype=np.float64).reshape(1)}


def ridge_from_state(tensors: dict[str, np.ndarray], alpha: float) -> Ridge:
    """A fitted Ridge rebuilt from its arrays: predictions match the original."""
    model = Ridge(alpha=alpha)
    model.coef_ = np.asarray(tensors["ridge.coef"], dtype=np.float64)
    model.intercept_ = float(np.asarray(tensors["ridge.intercept"]).reshape(-1)[0])
    model.n_features_in_ = model.coef_.shape[0]
    return model
