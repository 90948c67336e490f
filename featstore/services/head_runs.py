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
from featstore.heads.search import DEFAULT_BUDGET, DEFAULT_FOLDS, HeadSearch, search_protocol
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
    searches: list[HeadSearch] | None = None


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


def search_and_save(store: Store, plan: EvaluationPlan, task: str = "classification",
                    shots: int | None = None, repeats: int = 1, seed: int = 0,
                    name: str | None = None, budget: float = DEFAULT_BUDGET,
                    folds: int = DEFAULT_FOLDS, encoder: str | None = None,
                    fuse: tuple[str, ...] | None = None,
                    candidates: list[dict[str, Any]] | None = None,
                    progress: Any = None) -> SavedHead:
    """`fit-head --auto`: search poolings x heads by inner CV inside every training sample of
    the plan, report the winners' evaluation scores, save the kept winner (default name
    DATASET-auto) with its search record in head.json."""
    if name is not None:
        check_name(name, "head")
    run = search_protocol(store, plan, task=task, shots=shots, repeats=repeats, seed=seed,
                          budget=budget, folds=folds, candidates=candidates, encoder=encoder,
                          fuse=fuse, progress=progress)
    result = run.result
    name = name or f"{plan.train_name}-auto"
    check_name(name, "head")
    evaluation = {**result.summary(), "shots": shots, "repeats": repeats if shots else None}
    extra = {"evaluation": evaluation}
    if len(run.searches) > 1:
        extra["other_searches"] = [{"winner": s.best_name_, "inner_score": s.best_score_}
                                   for s in run.searches[1:]]
    path = run.searches[0].save(store, name, metrics=result.metrics, extra=extra)
    return SavedHead(name, path, result, run.searches)


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
              task: str = "classification", seed: int = 0, budget: float = DEFAULT_BUDGET,
              folds: int = DEFAULT_FOLDS) -> SavedHead:
    """Choose among the grid's configurations by inner CV on the training rows (never by the
    leaderboard's evaluation scores), refit the winner on all training rows, save it as `name`
    with its search record."""
    check_name(name, "head")
    done = [e for e in ranked if e.result]
    search = HeadSearch(task=task, budget=budget, folds=folds,
                        candidates=[e.params for e in done], label_col=plan.label_col, seed=seed)
    search.fit(store, plan.train, valid=plan.valid)
    chosen = done[search.best_index_]
    metrics = (search.best_estimator_.evaluate(store, plan.eval) if plan.eval is not None
               else chosen.result.metrics)
    evaluation = {**chosen.result.summary(), "metrics_from": "the winner refitted on all "
                  "training rows" if plan.eval is not None else "the leaderboard's CV run"}
    path = search.save(store, name, metrics=metrics, extra={"evaluation": evaluation})
    result = ProtocolResult(metrics, [metrics], search.best_estimator_, plan,
                            search.refit_seconds_, [])
    return SavedHead(name, path, result, [search])


def probe_all_layers(store: Store, plan: EvaluationPlan, encoder: str | None, c: float,
                     seed: int = 0, progress: Any = None) -> tuple[str, list[dict[str, Any]]]:
    """The encoder's id and one row per stored layer and feature (see `probe_layers`)."""
    enc = store.resolve_encoder(encoder, kind="encoder")
    return enc, probe_layers(store, plan, enc, c=c, seed=seed, progress=progress)
