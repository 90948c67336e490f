"""Fitting, comparing and probing heads as the command line does, for notebooks too: the data
plan (featurizing --train/--eval files first), one protocol run and its saved head, a grid of
configurations and its winner, the per-layer probe."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featstore.heads.compare import GridEntry, compare_grid, run_grid
from featstore.heads.errors import HeadError
from featstore.heads.layer_probe import probe_layers
from featstore.heads.protocols import EvaluationPlan, ProtocolResult, plan_evaluation, run_protocol
from featstore.services.datasets import dataset_for
from featstore.services.featurizing import Say
from featstore.store import Store, check_name, open_store


def plan_data(store_path: str | Path | None, train: str | None = None, eval: str | None = None,  # noqa: A002
              cv: int | None = None, label_col: str | None = None,
              task: str = "classification", seed: int = 0, model: str | None = None,
              tokens: bool = False, progress: bool = True, say: Say | None = None
              ) -> tuple[Store, EvaluationPlan]:
    """The store and the evaluation plan; --train/--eval corpus files are featurized first."""
    if task not in ("classification", "regression"):
        raise HeadError(f"unknown --task {task!r}; choose classification or regression")
    train_name = dataset_for(store_path, train, model, tokens, progress, say)
    eval_name = dataset_for(store_path, eval, model, tokens, progress, say)
    store = open_store(store_path)
    return store, plan_evaluation(store, train_name, eval_name, cv, label_col, task, seed)


@dataclass
class SavedHead:
    name: str
    path: Path
    result: ProtocolResult


def fit_and_save(store: Store, plan: EvaluationPlan, params: dict[str, Any],
                 task: str = "classification", shots: int | None = None, repeats: int = 1,
                 seed: int = 0, name: str | None = None, progress: Any = None) -> SavedHead:
    """Run one configuration under the plan and save the head it keeps as `name` (default
    DATASET-POOL-HEAD), its metrics and protocol in head.json."""
    if name is not None:
        check_name(name, "head")
    result = run_protocol(store, plan, params, task=task, shots=shots, repeats=repeats,
                          seed=seed, progress=progress)
    head = result.head
    name = name or f"{plan.train_name}-{params.get('pool', 'mean')}-{head.head_kind_}"
    check_name(name, "head")
    evaluation = {**result.summary(), "shots": shots, "repeats": repeats if shots else None}
    path = head.save(store, name, metrics=result.metrics, extra={"evaluation": evaluation})
    return SavedHead(name, path, result)


def default_fusion(store: Store, fuse: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The sources `compare` fuses: those asked for, else LASER when the store holds it."""
    if fuse:
        return fuse
    kinds = {e.fingerprint.get("kind") for e in store.manifest.encoders.values()}
    return ("laser",) if "laser" in kinds else ()


def comparison_grid(store: Store, pools: tuple[str, ...], heads: tuple[str, ...],
                    fuse: tuple[str, ...] = (), task: str = "classification",
                    base: dict[str, Any] | None = None) -> list[GridEntry]:
    """The configurations `compare` runs: pools x heads, the strong recipe, fusion entries."""
    return compare_grid(store, pools, heads, default_fusion(store, fuse), task, base)


def compare_heads(store: Store, plan: EvaluationPlan, entries: list[GridEntry],
                  task: str = "classification", seed: int = 0,
                  progress: Any = None) -> list[GridEntry]:
    """Every configuration under the plan, best first; skipped ones last. Refuses when none
    could run."""
    ranked = run_grid(store, plan, entries, task, seed, progress)
    if not any(e.result for e in ranked):
        raise HeadError("no configuration could run on this store: "
                        + "; ".join(e.skipped or "" for e in ranked[:3]))
    return ranked


def save_best(store: Store, plan: EvaluationPlan, ranked: list[GridEntry], name: str,
              task: str = "classification", seed: int = 0) -> SavedHead:
    """Refit the leaderboard's first entry on all training rows and save it as `name`."""
    check_name(name, "head")
    best = next(e for e in ranked if e.result)
    return fit_and_save(store, plan, best.params, task=task, seed=seed, name=name)


def probe_all_layers(store: Store, plan: EvaluationPlan, encoder: str | None, c: float,
                     seed: int = 0, progress: Any = None) -> tuple[str, list[dict[str, Any]]]:
    """The encoder's id and one row per stored layer and feature (see `probe_layers`)."""
    enc = store.resolve_encoder(encoder, kind="encoder")
    return enc, probe_layers(store, plan, enc, c=c, seed=seed, progress=progress)
