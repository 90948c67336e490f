"""`compare`: one dataset, a grid of poolings x heads (x fusion where the store has sources),
one leaderboard sorted by the task's main score, with train seconds per entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from featstore.heads.choices import COMPARE_HEADS, COMPARE_POOLS
from featstore.heads.errors import HeadError
from featstore.heads.metrics import primary_metric
from featstore.heads.poolings import is_trainable
from featstore.heads.protocols import EvaluationPlan, ProtocolResult, run_protocol
from featstore.store import Store

# the recipe that tops Banking77 for the default encoder: top-layer mean and max into an MLP,
# trained on every training row (no hold-out) for a fixed 20 epochs, five seeds averaged
STRONG = {"pool": "mean-max", "head": "mlp", "hidden": 512, "valid_fraction": 0.0,
          "ensemble": 5, "epochs": 20, "batch_size": 512, "lr": 2e-3}


@dataclass
class GridEntry:
    name: str
    params: dict[str, Any]
    result: ProtocolResult | None = None
    skipped: str | None = None


def _label(params: dict[str, Any]) -> str:
    name = f"{params['pool']}"
    if params.get("of"):
        name += f"({params['of']})"
    name += f" + {params['head']}"
    if params.get("hidden", 512) != 512 and params["head"] == "mlp":
        name += f"{params['hidden']}"
    if params.get("ensemble", 1) > 1:
        name += f" x{params['ensemble']} seeds"
    if params.get("fuse"):
        name += f" + {'/'.join(params['fuse'])} [{params.get('fuse_mode', 'concat')}]"
    return name


def compare_grid(store: Store, pools: tuple[str, ...] = COMPARE_POOLS,
         heads: tuple[str, ...] = COMPARE_HEADS, fuse: tuple[str, ...] = (),
         task: str = "classification", base: dict[str, Any] | None = None) -> list[GridEntry]:
    """Every valid combination; trainable poolings pair with torch heads only, and with
    fusion sources each head also runs on mean + sources (concat and project)."""
    base = dict(base or {})
    entries: list[GridEntry] = []
    for pool in pools:
        for head in heads:
            if head == "logreg" and (task == "regression" or pool in ("lstm", "attention")):
                continue
            if head == "logreg" and is_trainable(pool) and pool != "weighted":
                continue
            params = {**base, "pool": pool, "head": head}
            entries.append(GridEntry(_label(params), params))
    if task == "classification" and "mlp" in heads and "mean-max" in pools:
        params = {**base, **STRONG}
        entries.append(GridEntry(_label(params) + ", no hold-out", params))
    for head in heads:
        if not fuse or (head == "logreg" and task == "regression"):
            continue
        modes = ("concat",) if head == "logreg" else ("concat", "project")
        for mode in modes:
            params = {**base, "pool": "mean", "head": head, "fuse": list(fuse), "fuse_mode": mode}
            entries.append(GridEntry(_label(params), params))
    return entries


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
