"""What `--auto` searches: its candidates for a store (fixed poolings under logistic
regression, the strong and few-shot MLP recipes, trainable poolings, the store's other
sources fused), each with a readable name and a cost rank."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from featstore.heads.fusion_sources import encoder_layers
from featstore.heads.kinds import HEAD_KINDS
from featstore.heads.params import PAIR_HEAD, TEXT_HEAD
from featstore.selection.recipes import FEW, STRONG
from featstore.store import Store

SMALL_PER_CLASS = 30  # fewer training rows per class than this: the few-shot candidate set


@dataclass
class Candidate:
    """One configuration to score: its name, estimator parameters and a cost rank (cheap
    candidates are scored first, and win ties)."""

    name: str
    params: dict[str, Any]
    cost: float = 1.0
    refit: dict[str, Any] = field(default_factory=dict)  # overrides for the final fit only



def _default(name: str) -> Any:
    return TEXT_HEAD[name].default


def describe(params: dict[str, Any]) -> str:
    """A short readable name for a configuration: what differs from the declared defaults."""
    head = HEAD_KINDS.get(params.get("head") or "")
    if "combine" in params or "source" in params or (head is not None and head.unit == "pair"):
        return describe_pair(params)
    name = params.get("pool", _default("pool"))
    if params.get("of"):
        name += f"({params['of']})"
    if params.get("layers"):
        name += f"[L{','.join(str(x) for x in params['layers'])}]"
    if params.get("normalize", _default("normalize")) != _default("normalize"):
        name += f" {params['normalize']}"
    if params.get("pool") == "weighted" and params.get("head") == "logreg":
        name = name.replace("weighted", "avg-layers", 1)
    name += f" + {params.get('head') or 'default'}"
    if params.get("C") is not None:
        name += f" C={params['C']:g}"
    if params.get("head") in ("mlp", "linear"):
        if params.get("hidden", _default("hidden")) != _default("hidden") and \
                params.get("head") == "mlp":
            name += f"{params['hidden']}"
        if "dropout" in params:
            name += f" drop {params['dropout']:g}"
        if params.get("seeds", _default("seeds")) > 1:
            name += f" x{params['seeds']}"
        if params.get("valid_fraction", _default("valid_fraction")) == 0:
            name += f" {params.get('epochs', _default('epochs'))}ep"
    if params.get("fuse"):
        name += f" + {'/'.join(params['fuse'])} [{params.get('fuse_mode', _default('fuse_mode'))}]"
    return name


PART_NAMES = {"u": "u", "v": "v", "absdiff": "|u-v|", "product": "u*v", "cosine": "cos",
              "align": "align"}


def describe_pair(params: dict[str, Any]) -> str:
    """A pair configuration's name: what it reads, how the two vectors combine, the head."""
    pool = params.get("pool", PAIR_HEAD["pool"].default)
    if params.get("of"):
        pool += f"({params['of']})"
    if params.get("layers"):
        pool += f"[L{','.join(str(x) for x in params['layers'])}]"
    source = params.get("source", "bi")
    head = params.get("head") or "default"
    if head in ("cosine", "projection"):
        name = f"{head}({pool})"
    else:
        parts = ",".join(PART_NAMES[p] for p in params.get("combine",
                                                             PAIR_HEAD["combine"].default))
        what = {"bi": f"[{parts}]({pool})", "cross": f"cross({pool})",
                "both": f"[{parts}]({pool}) + cross"}[source]
        name = f"{what} + {head}"
    if params.get("C") is not None:
        name += f" C={params['C']:g}"
    if params.get("seeds", 1) > 1:
        name += f" x{params['seeds']}"
    if params.get("symmetric"):
        name += " sym"
    if params.get("fuse"):
        name += f" + {'/'.join(params['fuse'])}"
    return name


def _cand(params: dict[str, Any], cost: float) -> Candidate:
    return Candidate(describe(params), params, cost)


def _seeded(params: dict[str, Any], cost: float, seeds: int) -> Candidate:
    """A torch-head candidate scored with one seed and refitted as an average of `seeds`:
    averaging seeds helps every configuration alike, so it need not be paid for while
    choosing."""
    one = {**params, "seeds": 1}
    name = describe(one) + (f" (refit x{seeds} seeds)" if seeds > 1 else "")
    return Candidate(name, one, cost, {"seeds": seeds} if seeds > 1 else {})


def default_candidates(store: Store, task: str = "classification", rows_per_class: float = 1e9,
                       encoder: str | None = None, fuse: Sequence[str] | None = None,
                       seeds: int = 5) -> list[Candidate]:
    """What `--auto` searches on this store: fixed poolings (top layer, averaged layer ranges,
    concatenated layers) under logreg at two strengths; MLP heads (the strong Banking77 recipe
    on mean-max, on the top two layers averaged, a learned layer mix); lstm, attention where
    token states exist, and the store's other sources fused. Few rows per class switch the MLPs
    to the few-shot recipe."""
    enc = store.resolve_encoder(encoder, kind="encoder")
    layers = encoder_layers(store, enc)
    top = layers[-1]
    stored = set(store.encoder_entry(enc).feature_shapes)
    sources = list(fuse) if fuse is not None else [
        e.fingerprint.get("model", k) if e.kind == "encoder" else e.kind
        for k, e in store.manifest.encoders.items() if k != enc]
    small = rows_per_class < SMALL_PER_CLASS
    mlp = FEW if small else STRONG
    out: list[Candidate] = []
    if task == "classification":
        logregs = [("mean", {}, 0.1), ("cls", {}, 1.0), ("mean-max", {}, 0.1),
                   ("mean-max", {}, 1.0), ("concat", {"of": "mean"}, 0.1),
                   ("concat", {"of": "mean"}, 1.0), ("weighted", {"of": "mean"}, 0.1),
                   ("weighted", {"of": "mean-max"}, 0.1)]
        if small:  # few rows: weaker regularisation, and unit-length rows for the top mean
            logregs += [("mean-max", {}, 10.0), ("mean", {}, 1.0),
                        ("mean", {"normalize": "l2"}, 30.0)]
        for i, (pool, extra, c) in enumerate(logregs):
            out.append(_cand({"pool": pool, **extra, "head": "logreg", "C": c}, 1.0 + i / 100))
    out.append(_seeded(mlp, 5.0, seeds))
    if len(layers) > 1:
        out.append(_seeded({**mlp, "layers": [top - 1, top]}, 5.5, seeds))
        out.append(_seeded({**mlp, "pool": "weighted", "of": "mean-max"}, 5.2, seeds))
    if small:
        out.append(_seeded({**mlp, "dropout": 0.5}, 5.1, seeds))
        out.append(_seeded({**mlp, "pool": "mean"}, 5.05, seeds))
    if len(layers) > 2:
        out.append(_cand({"pool": "lstm", "head": "mlp"}, 8.0))
    if "tokens" in stored:
        out.append(_cand({"pool": "attention", "head": "mlp"}, 9.0))
    if sources:
        if task == "classification":
            out.append(_cand({"pool": "mean-max", "head": "logreg", "C": 0.1,
                              "fuse": sources}, 1.8))
        out.append(_seeded({**mlp, "fuse": sources}, 6.0, seeds))
    if encoder is not None:
        for c in out:
            c.params["encoder"] = encoder
    return out


# decomposable attention over each text's token states (the mean of every layer's); |va-vb|
# and va*vb keep it blind to the pair's order, so it needs no training on both orders
SOFT_ALIGN = {"pool": "soft-align", "head": "mlp", "combine": ["absdiff", "product"],
              "hidden": 128, "dropout": 0.1, "batch_size": 64, "epochs": 15,
              "valid_fraction": 0.0}
SOFT_ALIGN_SEEDS = 3  # refitted as the average of at most 3 seeds: one costs 20-35 s on STS-B


def pair_candidates(store: Store, task: str = "classification", n_classes: int = 0,
                    encoder: str | None = None, fuse: Sequence[str] | None = None,
                    seeds: int = 5) -> list[Candidate]:
    """What `--auto` searches for pairs: the cosine baseline; linear models on the SentEval
    row [u, v, |u-v|, u*v] and on the cosines of every stored layer; an MLP over both; the
    learned projection of the top layer's mean scored by cosine (regression, two classes);
    where the texts' token states are stored (`--tokens`), boosted trees on how they align
    beside every layer's CLS and mean cosines, and an MLP on their soft alignment; and, where
    the store holds the pairs' joint encoding, heads on it alone and beside the texts'
    vectors."""
    enc = store.resolve_encoder(encoder, kind="encoder")
    layers = encoder_layers(store, enc)
    stored = set(store.encoder_entry(enc).feature_shapes)
    cross = store.find_derived("cross", store.encoder_entry(enc).fingerprint) is not None
    linear = "ridge" if task == "regression" else "logreg"
    senteval = ("u", "v", "absdiff", "product")
    every = {"pool": "concat", "of": "mean-max", "layers": list(layers)} \
        if {"mean", "max"} <= stored else {"pool": "concat", "of": "mean",
                                            "layers": list(layers)}
    strengths = (None,) if task == "regression" else (0.1, 1.0)
    out: list[Candidate] = [_cand({"pool": "mean", "head": "cosine"}, 0.5)]
    for i, c in enumerate(strengths):
        out.append(_cand({"pool": "mean", "head": linear, "combine": list(senteval),
                          **({"C": c} if c is not None else {})}, 1.0 + i / 100))
    out.append(_cand({**every, "head": linear, "combine": ["cosine"],
                      **({"C": 1.0} if task == "classification" else {})}, 0.8))
    out.append(_cand({"pool": "mean-max", "head": linear,
                      "combine": ["absdiff", "product", "cosine"],
                      **({"C": 0.1} if task == "classification" else {})}, 1.2))
    mlp = {"pool": "mean-max", "head": "mlp", "combine": [*senteval, "cosine"],
           "dropout": 0.3, "symmetric": True}
    out.append(_seeded(mlp, 5.0, seeds))
    if task == "regression" or n_classes == 2:
        # on the top layer's mean only: over every layer's mean-max the square map has ~200x
        # the weights, and one inner fold of it costs minutes where this costs seconds
        out.append(_seeded({"pool": "mean", "head": "projection", "lr": 1e-4,
                            "symmetric": True}, 4.0, seeds))
    if "tokens" in stored:
        # beside the alignments, every layer's CLS and mean cosines (chosen over mean-max on
        # the inner folds of STS-B and SICK training rows)
        of = "cls-mean" if {"cls", "mean"} <= stored else every["of"]
        out.append(_cand({**every, "of": of, "head": "boosting", "combine": ["align", "cosine"]},
                         2.0))
        out.append(_seeded(SOFT_ALIGN, 7.0, min(seeds, SOFT_ALIGN_SEEDS)))
    if cross:
        out.append(_cand({"pool": "mean-max", "source": "cross", "head": linear,
                          **({"C": 0.1} if task == "classification" else {})}, 1.5))
        out.append(_seeded({"pool": "mean-max", "source": "cross", "head": "mlp",
                            "dropout": 0.3}, 5.5, seeds))
        out.append(_seeded({**mlp, "source": "both", "symmetric": False}, 6.0, seeds))
    if fuse:
        out.append(_cand({"pool": "mean", "head": linear, "combine": list(senteval),
                          "fuse": list(fuse)}, 1.8))
    if encoder is not None:
        for c in out:
            c.params["encoder"] = encoder
    return out
