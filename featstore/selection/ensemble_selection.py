"""Choosing a weighted mix of candidates from their out-of-fold probabilities (Caruana et al.,
2004: greedy forward selection with replacement), never from evaluation rows; what `--auto`
turns into a `HeadEnsemble` when the mix beats every single candidate."""

from __future__ import annotations

from collections.abc import Sequence

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
