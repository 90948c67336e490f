"""How well two texts' tokens align, per layer: the pair features a sentence vector loses.

For each layer every token of one text is matched to its most similar token of the other
(cosine of the stored token states, as BERTScore matches them), and the matches are summed up:
the F1 of the two directions' mean match (each floored just above 0), the weaker and the
stronger direction, the worst match on each side (a negation, a changed noun), the 10/25/50%
quantiles of all matches and the share of near-identical ones (cosine > 0.9); then the two
lengths (as log(1 + tokens), so a linear head reads them on the scale of the rest; trees split
them the same either way) and their relative difference. Every feature is symmetric in the two
texts, so either order gives the same row. Plain numpy on token arrays: no tokenizer, no model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

STATS = ("f1", "weaker", "stronger", "worst", "second_worst", "q10", "q25", "q50", "matched")
LENGTHS = ("shorter", "longer", "length_gap")
MATCHED = 0.9  # a token counts as matched above this cosine
FLOOR = 1e-6  # mean matches below it (texts pointing apart) count as this for the F1


def alignment_width(n_layers: int) -> int:
    return n_layers * len(STATS) + len(LENGTHS)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def pair_alignment(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[layers * len(STATS) + len(LENGTHS)] features of two texts' token states, each
    [tokens, layers, hidden] (or [tokens, hidden] for one layer)."""
    if a.ndim == 2:
        a, b = a[:, None], b[:, None]
    if len(a) == 0 or len(b) == 0:
        raise ValueError("a text with no token states")
    sim = np.einsum("ild,jld->lij", _unit_rows(a), _unit_rows(b))  # [layers, Ta, Tb]
    best_a, best_b = sim.max(axis=2), sim.max(axis=1)  # each token's best match
    p, r = best_a.mean(axis=1), best_b.mean(axis=1)
    pf, rf = np.maximum(p, FLOOR), np.maximum(r, FLOOR)  # a harmonic mean needs both > 0
    f1 = 2 * pf * rf / (pf + rf)
    worst_a, worst_b = best_a.min(axis=1), best_b.min(axis=1)
    both = np.concatenate([best_a, best_b], axis=1)
    q = np.quantile(both, [0.1, 0.25, 0.5], axis=1)  # [3, layers]
    stats = np.stack([f1, np.minimum(p, r), np.maximum(p, r), np.minimum(worst_a, worst_b),
                      np.maximum(worst_a, worst_b), q[0], q[1], q[2],
                      (both > MATCHED).mean(axis=1)], axis=1)  # [layers, STATS]
    na, nb = float(len(a)), float(len(b))
    lengths = [np.log1p(min(na, nb)), np.log1p(max(na, nb)), abs(na - nb) / max(na, nb)]
    return np.concatenate([stats.reshape(-1), lengths]).astype(np.float32)


def alignment_block(tokens: Sequence[np.ndarray], ia: np.ndarray, ib: np.ndarray
                    ) -> np.ndarray:
    """[pairs, width]: `pair_alignment` of tokens[ia[i]] and tokens[ib[i]] for each pair."""
    n_layers = 1 if tokens[0].ndim == 2 else tokens[0].shape[1]
    out = np.empty((len(ia), alignment_width(n_layers)), dtype=np.float32)
    for i, (a, b) in enumerate(zip(ia, ib, strict=True)):
        out[i] = pair_alignment(tokens[a], tokens[b])
    return out
