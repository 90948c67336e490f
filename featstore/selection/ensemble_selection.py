"""Choosing a mix of candidates from their out-of-fold outputs on the training rows, never
from evaluation rows: for classifiers, greedy forward selection with replacement over their
probabilities (Caruana et al., 2004), what `--auto` turns into a `HeadEnsemble`; for
regressors, a ridge regression over their predictions (stacking), an `EnsembleRegressor`. Each
replaces the winner only when it beats every single candidate."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from featstore.heads.errors import HeadError

MAX_ROUNDS = 10  # greedy additions (with replacement) before the selection stops


def select_ensemble(probas: Sequence[np.ndarray], truth: np.ndarray,
                    rounds: int = MAX_ROUNDS) -> tuple[list[int], float]:
    """(picks per candidate, accuracy of the mix): start from the most accurate candidate and
    add, with replacement, whichever candidate makes the averaged probabilities most accurate;
    keep the shortest prefix that reached the best accuracy, so a mix is kept only where it
    beats the best single candidate. Ties go to the earlier candidate."""
    if not probas:
        raise HeadError("no candidate probabilities to select an ensemble from")
    total = np.zeros_like(probas[0], dtype=np.float64)
    counts = [0] * len(probas)
    best_counts, best_acc = list(counts), -1.0
    for _ in range(rounds):
        accs = [float(np.mean((total + p).argmax(axis=1) == truth)) for p in probas]
        pick = int(np.argmax(accs))  # first of the best
        total += probas[pick]
        counts[pick] += 1
        if accs[pick] > best_acc:
            best_acc, best_counts = accs[pick], list(counts)
    return best_counts, best_acc


STACK_ALPHA = 1.0  # ridge strength on standardised member predictions: a handful of highly
# correlated columns, so the weights stay stable without a search


def stack_regressors(preds: Sequence[np.ndarray], truth: np.ndarray,
                     folds: Sequence[tuple[np.ndarray, np.ndarray]],
                     score: Callable[[np.ndarray, np.ndarray], float]
                     ) -> tuple[np.ndarray, float, float]:
    """(weights per candidate, intercept, score of the stack): a ridge regression of the truth
    on the candidates' out-of-fold predictions. Its score is itself out of fold: for each
    inner fold the stack is fitted on the other folds' rows and predicts the fold's, so it
    competes with the single candidates' out-of-fold scores on equal terms."""
    from sklearn.linear_model import Ridge

    if not preds:
        raise HeadError("no candidate predictions to stack")
    x = np.column_stack([np.asarray(p, dtype=np.float64) for p in preds])
    mu, sd = x.mean(axis=0), x.std(axis=0)
    sd[sd == 0] = 1.0
    z = (x - mu) / sd
    crossed = np.zeros(len(truth), dtype=np.float64)
    for tr, te in folds:
        crossed[te] = Ridge(alpha=STACK_ALPHA).fit(z[tr], truth[tr]).predict(z[te])
    model = Ridge(alpha=STACK_ALPHA).fit(z, truth)
    weights = model.coef_ / sd  # on the members' own scales
    intercept = float(model.intercept_ - np.sum(model.coef_ * mu / sd))
    return weights, intercept, float(score(truth, crossed))
