"""What `--seq-head auto` tries and how it chooses: every message layout with every summary
head (mean, last, mean + last, mean + max of the standardised message vectors into logistic
regression, each C of the grid), then the sequence networks on the layout the summary heads
liked best, all scored by stratified inner cross-validation over the training sequences only
(a sequence's messages always on one side of a fold). The best mean inner accuracy wins; ties
go to the earlier, simpler candidate, and between values of C to the stronger regularisation.

It lives beside the sequence head, not in `featstore.selection`, because `auto` is a kind of
sequence head: a saved `auto` head is fitted, refitted and loaded by the head alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from featstore.heads.kinds import HEAD_KINDS
from featstore.heads.logreg import c_path
from featstore.heads.sequence_inputs import summarize_sequences
from featstore.heads.sequence_layouts import MessageLayout, MessageVectors, learn_layer_weights
from featstore.heads.sequences import Sequences
from featstore.heads.splits import FoldScores

# logistic regression's C for sequence heads: sequence sets are small and weakly signalled,
# and on them the best C sat at 0.001-0.003, below the per-text grid's smallest (0.01)
SEQUENCE_C_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)

# (kind, layout, fold's training sequences, its labels, fold's test sequences) -> probabilities
TrainPredict = Callable[[str, np.ndarray, Sequences, np.ndarray, Sequences], np.ndarray]


def summary_kind(kind: str) -> bool:
    """Whether a sequence head kind is a summary into logistic regression."""
    return HEAD_KINDS[kind].trained_by == "logreg"


@dataclass
class SequenceCandidate(FoldScores):
    """One configuration auto scored: a layout, a head kind, and C for the summary heads."""

    layout: MessageLayout
    kind: str
    C: float | None = None
    scores: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def name(self) -> str:
        c = f" · C {self.C:g}" if self.C is not None else ""
        return f"{self.kind} · {self.layout.describe()}{c}"

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "seq_head": self.kind, "layout": self.layout.describe(),
                "message_layout": self.layout.to_json(),
                "C": self.C, "inner_accuracy": round(self.mean, 6),
                "std": round(self.std, 6), "folds": len(self.scores),
                "seconds": round(self.seconds, 3)}


@dataclass
class SearchResult:
    """Every candidate scored (in the order tried) and the winner among them."""

    candidates: list[SequenceCandidate]
    winner: SequenceCandidate
    folds: int

    def best_per_head(self) -> dict[str, float]:
        """Each head kind's best inner accuracy (over layouts and C): the short table
        `fit.inner_cv` keeps; `fit.search` has every candidate."""
        out: dict[str, float] = {}
        for c in self.candidates:
            out[c.kind] = max(out.get(c.kind, -1.0), round(c.mean, 6))
        return out


def _better(a: SequenceCandidate, b: SequenceCandidate) -> bool:
    """Whether a beats b: a higher mean inner accuracy (rounded, so float noise is a tie)."""
    return round(a.mean, 6) > round(b.mean, 6)


def search_sequences(vectors: dict[MessageLayout, MessageVectors], seqs: Sequences,
                     y: np.ndarray, kinds: tuple[str, ...],
                     splits: list[tuple[np.ndarray, np.ndarray]], train_predict: TrainPredict,
                     c: float | None, max_iter: int, seed: int,
                     grid: tuple[float, ...] = SEQUENCE_C_GRID) -> SearchResult:
    """Score every layout x summary head x C, then the networks on the best layout, over
    `splits` (pairs of sequence indices); see the module docstring."""
    cs = (c,) if c is not None else tuple(sorted(grid))
    summaries = [k for k in kinds if summary_kind(k)]
    networks = [k for k in kinds if not summary_kind(k)]
    tried: list[SequenceCandidate] = []
    by_layout: dict[MessageLayout, list[SequenceCandidate]] = {}
    for layout, vec in vectors.items():
        found = {(k, cc): SequenceCandidate(layout, k, cc) for k in summaries for cc in cs}
        for tr, te in splits:
            start = time.perf_counter()
            matrix = _fold_matrix(vec, seqs, y, tr, c, max_iter, seed, grid)
            for k in summaries:
                x = summarize_sequences(k, matrix, seqs.rows)
                accs = c_path(x[tr], y[tr], x[te], y[te], cs, max_iter, seed)
                for cc, acc in zip(cs, accs, strict=True):
                    found[(k, cc)].scores.append(acc)
            spent = (time.perf_counter() - start) / max(1, len(found))
            for cand in found.values():
                cand.seconds += spent
        by_layout[layout] = list(found.values())
        tried += by_layout[layout]
    best_layout = _best(tried).layout if summaries else next(iter(vectors))
    for k in networks:
        cand = SequenceCandidate(best_layout, k)
        for tr, te in splits:
            start = time.perf_counter()
            matrix = _fold_matrix(vectors[best_layout], seqs, y, tr, c, max_iter, seed, grid)
            proba = train_predict(k, matrix, seqs.subset(tr), y[tr], seqs.subset(te))
            cand.scores.append(float((proba.argmax(1) == y[te]).mean()))
            cand.seconds += time.perf_counter() - start
        tried.append(cand)
    return SearchResult(tried, _best(_simplest_first(tried, kinds)), len(splits))


def _simplest_first(tried: list[SequenceCandidate], kinds: tuple[str, ...]
                    ) -> list[SequenceCandidate]:
    """Candidates in order of simplicity: layouts as given (top layer, average, weighted),
    head kinds as listed, smaller C (stronger regularisation) first."""
    layouts = list(dict.fromkeys(c.layout for c in tried))
    return sorted(tried, key=lambda c: (kinds.index(c.kind) if not summary_kind(c.kind) else -1,
                                        layouts.index(c.layout), kinds.index(c.kind),
                                        c.C if c.C is not None else 0.0))


def _best(cands: list[SequenceCandidate]) -> SequenceCandidate:
    best = cands[0]
    for cand in cands[1:]:
        if _better(cand, best):
            best = cand
    return best


def _fold_matrix(vec: MessageVectors, seqs: Sequences, y: np.ndarray, tr: np.ndarray,
                 c: float | None, max_iter: int, seed: int, grid: tuple[float, ...]
                 ) -> np.ndarray:
    """The message rows a fold's models read: for a weighted layout, mixed by weights learned
    on the fold's training sequences only."""
    if not vec.layout.weighted:
        return vec.mixed()
    weights, _ = learn_layer_weights(vec, [seqs.rows[i] for i in tr], y[tr], c, grid,
                                     max_iter, seed)
    return vec.mixed(weights)
