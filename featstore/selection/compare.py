"""`compare`: one dataset, a grid of configurations (poolings x heads, x fusion where the store
has sources; or sequence heads), one leaderboard sorted by the task's main score, with train
seconds per entry. Every entry runs under the same plan and folds, whatever the unit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from featstore.heads.errors import HeadError
from featstore.heads.kinds import POOLINGS_BY_NAME, compatible
from featstore.heads.metrics import primary_metric
from featstore.heads.params import TEXT_HEAD
from featstore.heads.protocols import EvaluationPlan, ProtocolResult, run_protocol
from featstore.selection.candidates import describe_pair, pair_candidates
from featstore.selection.recipes import STRONG
from featstore.selection.settings import COMPARE_HEADS, COMPARE_POOLS
from featstore.store import Store


@dataclass
class GridEntry:
    name: str
    params: dict[str, Any]
    result: ProtocolResult | None = None
    skipped: str | None = None


def entry_name(params: dict[str, Any]) -> str:
    """A leaderboard line's name: the pooling and head, and what differs from the defaults."""
    default = TEXT_HEAD.defaults()
    name = f"{params['pool']}"
    if params.get("of"):
        name += f"({params['of']})"
    name += f" + {params['head']}"
    if params.get("hidden", default["hidden"]) != default["hidden"] and params["head"] == "mlp":
        name += f"{params['hidden']}"
    if params.get("seeds", default["seeds"]) > 1:
        name += f" x{params['seeds']} seeds"
    if params.get("fuse"):
        name += f" + {'/'.join(params['fuse'])} " \
                f"[{params.get('fuse_mode', default['fuse_mode'])}]"
    return name


def compare_grid(pools: tuple[str, ...] = COMPARE_POOLS, heads: tuple[str, ...] = COMPARE_HEADS,
                 fuse: tuple[str, ...] = (), task: str = "classification",
                 base: dict[str, Any] | None = None) -> list[GridEntry]:
    """Every pooling x head that goes together (featstore.heads.kinds), the strong recipe, and
    with fusion sources each head also on mean + sources (concat, and project for torch
    heads)."""
    base = dict(base or {})
    entries: list[GridEntry] = []
    for pool in pools:
        for head in heads:
            if compatible(pool, head, task):
                params = {**base, "pool": pool, "head": head}
                entries.append(GridEntry(entry_name(params), params))
    if task == "classification" and "mlp" in heads and "mean-max" in pools:
        params = {**base, **STRONG}
        entries.append(GridEntry(entry_name(params) + f", {params['epochs']} epochs on all "
                                 "training rows", params))
    for head in heads:
        for mode in ("concat", "project") if fuse else ():
            if not compatible("mean", head, task, mode):
                continue
            params = {**base, "pool": "mean", "head": head, "fuse": list(fuse), "fuse_mode": mode}
            entries.append(GridEntry(entry_name(params), params))
    return entries


def pair_grid(store: Store, pools: tuple[str, ...] | None, heads: tuple[str, ...] | None,
              task: str = "classification", base: dict[str, Any] | None = None,
              n_classes: int = 0) -> list[GridEntry]:
    """Pair heads side by side, the cosine baseline first: by default what `--auto` searches
    (each text's vectors and, where stored, the pairs' joint encoding), one seed each; with
    `pools`/`heads`, every pooling x head on each text's vectors and on the joint encoding."""
    base = dict(base or {})
    if pools is None and heads is None:
        cands = pair_candidates(store, task, n_classes, base.get("encoder"), None, 1)
        return [GridEntry(c.name, {**base, **c.params}) for c in cands]
    entries = [GridEntry("cosine(mean)", {**base, "pool": "mean", "head": "cosine"})]
    cross = store.find_derived("cross", store.encoder_entry(
        store.resolve_encoder(base.get("encoder"), kind="encoder")).fingerprint) is not None
    for source in ("bi", "cross") if cross else ("bi",):
        for pool in pools or ("mean",):
            for head in heads or ("logreg" if task == "classification" else "ridge", "mlp"):
                if head == "cosine" and pool == "mean" and source == "bi":
                    continue
                if not compatible(pool, head, task, unit="pair") or (
                        source == "cross" and (head in ("cosine", "projection")
                                               or POOLINGS_BY_NAME[pool].trainable)):
                    continue
                params = {**base, "pool": pool, "head": head, "source": source}
                entries.append(GridEntry(describe_pair(params), params))
    return entries


def sequence_grid(heads: tuple[str, ...], base: dict[str, Any]) -> list[GridEntry]:
    """Each sequence head (the mean, last and mean-last baselines among them) on the same
    message vectors."""
    return [GridEntry(kind, {**base, "seq_head": kind}) for kind in heads]


def run_grid(store: Store, plan: EvaluationPlan, entries: list[GridEntry],
             task: str = "classification", seed: int = 0, progress: Any = None) -> list[GridEntry]:
    """Run every entry; an entry the store cannot serve (no tokens, no pooler) is skipped with
    its reason. Returns entries best first, skipped ones last."""
    for e in entries:
        try:
            e.result = run_protocol(store, plan, e.params, task=task, seed=seed, refit=False)
        except HeadError as exc:
            e.skipped = str(exc)
        if progress is not None:
            progress.update(1)
    metric = primary_metric(task)
    done = sorted((e for e in entries if e.result), key=lambda e: -e.result.metrics[metric])
    return done + [e for e in entries if not e.result]


def score_spread(plan: EvaluationPlan, entries: list[GridEntry], metric: str
                 ) -> tuple[list[float], str]:
    """Error bars for a leaderboard and what they are: the standard deviation over runs (folds,
    seeds or repeats) where entries ran several times, else, for accuracy on one evaluation set,
    its standard error over the n evaluation examples, Agresti-Coull adjusted (two successes
    and two failures added, so a perfect score on a small set still shows its uncertainty:
    sqrt(q(1 - q) / (n + 4)), q = (correct + 2) / (n + 4)); none otherwise."""
    runs = [len(e.result.runs) for e in entries if e.result]
    if runs and min(runs) > 1:
        over = f"the {plan.cv} CV folds" if plan.cv and min(runs) == plan.cv else \
            f"{min(runs)} runs"
        return ([float(e.result.metrics.get(f"{metric}_std", 0.0)) for e in entries
                 if e.result], f"1 standard deviation over {over}")
    n = plan.eval_examples or (len(plan.eval) if plan.eval is not None else 0)
    if metric != "accuracy" or not n:
        return [0.0] * len(runs), ""
    adjusted = [(float(e.result.metrics[metric]) * n + 2) / (n + 4) for e in entries
                if e.result]
    return ([float(np.sqrt(q * (1 - q) / (n + 4))) for q in adjusted],
            f"1 standard error of accuracy on the {n} evaluation examples (Agresti-Coull)")
