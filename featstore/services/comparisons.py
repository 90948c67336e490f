"""`compare` and `probe-layers` as the command line runs them, for notebooks too: a grid of
configurations (or of sequence heads) under one plan, its winner chosen by inner CV on the
training rows and saved, and the per-layer probe."""

from __future__ import annotations

from typing import Any

from featstore.heads.artifacts import refuse_existing_head
from featstore.heads.base import StoreHead
from featstore.heads.errors import HeadError
from featstore.heads.params import HEAD_SELECTOR
from featstore.heads.protocols import EvaluationPlan, ProtocolResult
from featstore.heads.sequence_estimator import SequenceClassifier
from featstore.selection.auto import HeadSelector
from featstore.selection.compare import GridEntry, compare_grid, run_grid
from featstore.selection.layer_probe import probe_layers
from featstore.services.head_runs import SavedHead
from featstore.store import Store


def default_fusion(store: Store, fuse: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The sources `compare` fuses: those asked for, else LASER when the store holds it."""
    if fuse:
        return fuse
    kinds = {e.kind for e in store.manifest.encoders.values()}
    return ("laser",) if "laser" in kinds else ()


def comparison_grid(store: Store, pools: tuple[str, ...], heads: tuple[str, ...],
                    fuse: tuple[str, ...] = (), task: str = "classification",
                    base: dict[str, Any] | None = None) -> list[GridEntry]:
    """The configurations `compare` runs: pools x heads, the strong recipe, fusion entries."""
    return compare_grid(pools, heads, default_fusion(store, fuse), task, base)


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
              task: str = "classification", seed: int = 0,
              budget: float = HEAD_SELECTOR["budget"].default,
              folds: int = HEAD_SELECTOR["folds"].default, overwrite: bool = False
              ) -> SavedHead:
    """Choose among the compared configurations by inner CV on the training rows (never by the
    leaderboard's evaluation scores), refit the winner on all training rows, save it as `name`
    (with its search record, for per-text heads)."""
    refuse_existing_head(store, name, overwrite)
    done = [e for e in ranked if e.result]
    chooser, chosen_index = _chooser(store, plan, done, task, seed, budget, folds)
    chooser.fit(store, plan.train, **({"valid": plan.valid} if plan.valid is not None else {}))
    chosen = done[chosen_index(chooser)]
    metrics = (chooser.evaluate(store, plan.eval) if plan.eval is not None
               else chosen.result.metrics)
    evaluation = {**chosen.result.summary(), "metrics_from": "the winner refitted on all "
                  "training rows" if plan.eval is not None else "the leaderboard's CV run"}
    path = chooser.save(store, name, metrics=metrics, extra={"evaluation": evaluation},
                        overwrite=overwrite)
    result = ProtocolResult(metrics, [metrics], chooser, plan, chooser.fit_info_.get(
        "refit_seconds", chooser.fit_info_.get("train_seconds", 0.0)), [])
    return SavedHead(name, path, result,
                     [chooser] if isinstance(chooser, HeadSelector) else None)


def _chooser(store: Store, plan: EvaluationPlan, done: list[GridEntry], task: str, seed: int,
             budget: float, folds: int) -> tuple[StoreHead, Any]:
    """An estimator that picks one of the configurations by inner CV on the rows it is fitted
    on, and how to tell which it picked: a sequence head's `auto` among the compared kinds, a
    HeadSelector (no mix: one of the compared configurations is saved) otherwise."""
    if not done:
        raise HeadError("no configuration could run, so none can be saved")
    if plan.unit.name == "sequence":
        kinds = tuple(e.params["seq_head"] for e in done)
        params = {**done[0].params, "seq_head": "auto", "candidates": kinds,
                  "label_col": plan.label_col, "seed": seed}
        # the layout the leaderboard's heads read, so that auto searches the heads alone
        params.update(plan.unit.estimator(task, {**done[0].params}).layout_params(store))
        head = plan.unit.estimator(task, params)
        return head, lambda h: kinds.index(h.kind_) if isinstance(h, SequenceClassifier) else 0
    pairs = tuple(plan.unit.text_columns) if plan.unit.name == "pair" else None
    selector = HeadSelector(task=task, budget=budget, folds=folds,
                            search_space=[e.params for e in done], label_col=plan.label_col,
                            allow_ensemble=False, pair_cols=pairs, seed=seed)
    return selector, lambda s: s.best_index_


def probe_all_layers(store: Store, plan: EvaluationPlan, encoder: str | None, c: float,
                     seed: int = 0, progress: Any = None) -> tuple[str, list[dict[str, Any]]]:
    """The encoder's id and one row per stored layer and feature (see `probe_layers`)."""
    if plan.unit.name == "pair":
        raise HeadError("probe-layers probes per-text heads; for a pair dataset, `featstore "
                        "compare` ranks pair heads")
    enc = store.resolve_encoder(encoder, kind="encoder")
    return enc, probe_layers(store, plan, enc, c=c, seed=seed, progress=progress)
