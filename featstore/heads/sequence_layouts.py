"""How each message becomes one vector for a sequence head: its layout (a fixed pooling of the
top layer, of the average of several layers, or of a weighted average of layers whose weights
are learned on the training sequences), and the message rows read once in that layout and
standardised with statistics of the training messages.

Weighted layers, for sequences: the per-layer vectors are standardised per layer and mixed
with softmax weights learned on the training sequences by alternating two convex fits (the
logistic regression on the mixed mean + last summary given the weights; the few weights given
its coefficients), before any head sees them. They are learned apart from the head because
logistic regression, the strongest head on small or weakly signalled sets, cannot learn them
itself; because a handful of weights fitted on whole sequences have little variance; and
because every head kind then reads the same [messages, width] rows (a network reading every
layer would take L times the input and more epochs to learn the same mix).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_expit, softmax

from featstore.heads.errors import HeadError, ParamError
from featstore.heads.fusion_sources import encoder_layers
from featstore.heads.inputs import HeadInputs, InputLayout
from featstore.heads.kinds import pooling
from featstore.heads.logreg import fit_logreg
from featstore.heads.sequence_inputs import summarize_sequences
from featstore.store import Store

DEFAULT_POOL = "mean"  # a sequence head's per-message pooling when none is given
WEIGHT_ROUNDS = 2  # alternations of the layer-weight fit (the second one moves them little)


def layer_span(layers: Sequence[int]) -> str:
    """`1-6` for a run of layers, `1,3,5` otherwise."""
    ls = list(layers)
    if len(ls) > 2 and ls == list(range(ls[0], ls[-1] + 1)):
        return f"{ls[0]}-{ls[-1]}"
    return ",".join(map(str, ls))


@dataclass(frozen=True)
class MessageLayout:
    """The stored rows one message vector is made of: a pooling (`weighted`: learned layer
    weights over `of`), and its model layer numbers, resolved (averaged when several, unless
    weighted)."""

    pool: str
    layers: tuple[int, ...]
    of: str | None = None

    @property
    def weighted(self) -> bool:
        return self.pool == "weighted"

    def describe(self) -> str:
        """`mean of layer 6`, `mean, average of layers 1-6`, `weighted layers 1-6 of mean`."""
        if not self.layers:
            return self.pool
        span = layer_span(self.layers)
        if self.weighted:
            return f"weighted layers {span} of {self.of or pooling('weighted').default_of}"
        if len(self.layers) == 1:
            return f"{self.pool} of layer {span}"
        return f"{self.pool}, average of layers {span}"

    def to_json(self) -> dict[str, Any]:
        return {"pool": self.pool, "of": self.of, "layers": list(self.layers)}


def _from_first(stored: list[int]) -> tuple[int, ...]:
    """Every transformer layer (1 to the top); the top alone when no other is stored."""
    top = stored[-1]
    return tuple(i for i in stored if i >= min(1, top))


def _resolved(layers: Sequence[int], stored: list[int]) -> tuple[int, ...]:
    top = stored[-1]
    return tuple(top + 1 + i if i < 0 else int(i) for i in layers)


def candidate_layouts(store: Store, encoder_id: str, pool: str | None, of: str | None,
                      layers: Sequence[int] | None) -> list[MessageLayout]:
    """The layouts `auto` tries, simplest first; a pooling or layers the user gave are kept.

    With neither: mean of the top layer, mean averaged over layers 1 to the top, and weighted
    layers 1 to the top. `pool` given: that pooling on the top layer and averaged over layers 1
    to the top (weighted: its layers only). `layers` given: the mean averaged over them and
    weighted over them. Both given: that one layout."""
    stored = encoder_layers(store, encoder_id)
    if not stored:
        raise HeadError("the encoder's fingerprint lists no layers")
    top = stored[-1]
    every = _from_first(stored)
    given = _resolved(layers, stored) if layers else None
    out: list[MessageLayout] = []
    if pool is not None and not pooling(pool).layered:
        out = [MessageLayout(pool, ())]
    elif pool == "weighted":
        out = [MessageLayout(pool, given or every, of)]
    elif pool is not None:
        out = [MessageLayout(pool, given)] if given else \
            [MessageLayout(pool, (top,)), MessageLayout(pool, every)]
    elif given:
        out = [MessageLayout(DEFAULT_POOL, given), MessageLayout("weighted", given, of)]
    else:
        out = [MessageLayout(DEFAULT_POOL, (top,)), MessageLayout(DEFAULT_POOL, every),
               MessageLayout("weighted", every, of)]
    # a weighted mix of one layer is that layer; the average of one layer is the layer
    seen, unique = set(), []
    for lay in out:
        if lay.weighted and len(lay.layers) < 2:
            lay = MessageLayout(DEFAULT_POOL if lay.of in (None, "mean") else lay.of,
                                lay.layers)
        key = (lay.pool, lay.layers, lay.of if lay.weighted else None)
        if key not in seen:
            seen.add(key)
            unique.append(lay)
    return unique


def default_layout(store: Store, encoder_id: str, pool: str | None, of: str | None,
                   layers: Sequence[int] | None) -> MessageLayout:
    """The layout of a head that does not search: what was given; without a pooling, the mean
    averaged over layers 1 to the top (the middle of auto's candidates: on conversation sets
    it beat the top layer alone for every head); a pooling without layers reads its own
    default layers, as per-text heads do."""
    if pool is None:
        options = candidate_layouts(store, encoder_id, None, of, layers)
        return options[min(1, len(options) - 1)] if not layers else options[0]
    if not pooling(pool).layered:
        return MessageLayout(pool, ())
    if pool == "weighted":
        return candidate_layouts(store, encoder_id, pool, of, layers)[0]
    if layers:
        return MessageLayout(pool, _resolved(layers, encoder_layers(store, encoder_id)))
    return MessageLayout(pool, (encoder_layers(store, encoder_id)[-1],))


class MessageVectors:
    """A layout's message rows for one table, standardised on the training messages: one
    [messages, width] matrix, or for `weighted` one [messages, layers, width] array (each
    layer standardised) mixed by `mixed(weights)`. Fusion sources' columns follow."""

    def __init__(self, layout: MessageLayout, inputs: HeadInputs, matrix: np.ndarray) -> None:
        self.layout = layout
        self.inputs = inputs
        n_layers = int(inputs.dims.get("layers", 1)) if layout.weighted else 1
        enc = int(inputs.dims["enc"]) * n_layers
        self.layered = matrix[:, :enc].reshape(len(matrix), n_layers, -1)
        self.rest = matrix[:, enc:]

    @classmethod
    def read(cls, store: Store, layout: MessageLayout, fuse: Sequence[str], encoder: str | None,
             normalize: str, keys: list[str], where: str) -> MessageVectors:
        """The rows of `keys`, with normalisers fitted on them (the training messages)."""
        resolved = InputLayout.resolve(store, layout.pool, layout.of, list(layout.layers) or None,
                                       None, fuse, encoder)
        inputs = HeadInputs(resolved, layout.pool, not layout.weighted, True, normalize)
        return cls(layout, inputs, inputs.fit_transform(store, keys, where).matrix())

    @classmethod
    def apply(cls, store: Store, layout: MessageLayout, inputs: HeadInputs, keys: list[str],
              where: str) -> MessageVectors:
        """The rows of `keys` with fitted inputs (any store holding the same features)."""
        return cls(layout, inputs, inputs.matrix(store, keys, where))

    @property
    def n_layers(self) -> int:
        return int(self.layered.shape[1])

    def mixed(self, weights: np.ndarray | None = None) -> np.ndarray:
        """[messages, width]: the layers mixed by `weights` (weighted layouts), sources after."""
        if self.layout.weighted:
            if weights is None or len(weights) != self.n_layers:
                raise HeadError(f"a weighted layout needs {self.n_layers} layer weights")
            enc = np.einsum("nld,l->nd", self.layered, np.asarray(weights, dtype=np.float32))
        else:
            enc = self.layered[:, 0]
        if not self.rest.shape[1]:
            return np.ascontiguousarray(enc, dtype=np.float32)
        return np.concatenate([enc, self.rest], axis=1).astype(np.float32, copy=False)


def learn_layer_weights(vectors: MessageVectors, rows: list[np.ndarray], y: np.ndarray,
                        c: float | None, grid: tuple[float, ...], max_iter: int, seed: int
                        ) -> tuple[np.ndarray, float]:
    """Softmax layer weights for `vectors` (a weighted layout) from the sequences `rows` with
    labels `y`: start uniform; fit logistic regression on the mixed mean + last summary (C by
    inner CV on these sequences unless `c`); then, holding its coefficients, the weights that
    minimise its loss; again. Returns (weights, the C used)."""
    if not vectors.layout.weighted:
        raise ParamError("layer weights are learned for {pool=}weighted only")
    n_layers = vectors.n_layers
    weights = np.full(n_layers, 1.0 / n_layers, dtype=np.float64)
    per_layer = np.stack([summarize_sequences("mean-last", vectors.layered[:, i], rows)
                          for i in range(n_layers)], axis=1)  # [sequences, layers, 2 * width]
    rest = summarize_sequences("mean-last", vectors.rest, rows) if vectors.rest.shape[1] else None
    classes = np.unique(y)
    for _ in range(WEIGHT_ROUNDS):
        x = np.einsum("slk,l->sk", per_layer, weights).astype(np.float32)
        if rest is not None:
            x = np.concatenate([x, rest], axis=1)
        model, info = fit_logreg(x, y, c, max_iter, seed, grid)
        c = info["C"]
        width = per_layer.shape[2]
        coef = np.asarray(model.coef_, dtype=np.float64)  # [classes or 1, features]
        base = np.asarray(model.intercept_, dtype=np.float64)[None, :]
        if rest is not None:
            base = base + rest @ coef[:, width:].T
        scores = np.einsum("slk,ck->slc", per_layer, coef[:, :width])  # [s, layers, c]
        target = np.searchsorted(classes, y)

        def loss(logits: np.ndarray, scores: np.ndarray = scores, base: np.ndarray = base,
                 target: np.ndarray = target) -> float:
            z = base + np.einsum("slc,l->sc", scores, softmax(logits))
            if z.shape[1] == 1:  # binary: one decision function
                sign = np.where(target == 1, 1.0, -1.0)
                return float(-log_expit(sign * z[:, 0]).mean())
            z = z - z.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            return float(-logp[np.arange(len(target)), target].mean())

        found = minimize(loss, np.log(weights), method="L-BFGS-B")
        weights = softmax(found.x)
    return weights.astype(np.float32), float(c)
