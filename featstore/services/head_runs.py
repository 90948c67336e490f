"""Fitting, comparing and probing heads as the command line does, for notebooks too: the data
plan (featurizing --train/--eval files first), one protocol run and its saved head, a grid of
configurations and its winner, the per-layer probe."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featstore.heads.artifacts import list_heads, read_head_json, refuse_existing_head
from featstore.heads.charts import confusion_chart
from featstore.heads.compare import GridEntry, compare_grid, run_grid
from featstore.heads.errors import HeadError
from featstore.heads.estimator import make_head
from featstore.heads.layer_probe import probe_layers
from featstore.heads.metrics import primary_metric
from featstore.heads.protocols import EvaluationPlan, ProtocolResult, plan_evaluation, run_protocol
from featstore.heads.report import ClassReport, class_report
from featstore.heads.search import DEFAULT_BUDGET, DEFAULT_FOLDS, HeadSearch, search_protocol
from featstore.services.datasets import dataset_for
from featstore.services.featurizing import Say
from featstore.store import KEY_COLUMN, Store, check_name, default_store_path, open_store


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
                 seed: int = 0, name: str | None = None, progress: Any = None,
                 overwrite: bool = False, keep_predictions: bool = False) -> SavedHead:
    """Run one configuration under the plan and save the head it keeps as `name` (default
    DATASET-POOL-HEAD), its metrics and protocol in head.json. An existing head of that name is
    refused before any training, unless `overwrite`."""
    name = name or default_head_name(plan, params, task)
    refuse_existing_head(store, name, overwrite)
    result = run_protocol(store, plan, params, task=task, shots=shots, repeats=repeats,
                          seed=seed, progress=progress, keep_predictions=keep_predictions)
    evaluation = {**result.summary(), "shots": shots, "repeats": repeats if shots else None}
    path = result.head.save(store, name, metrics=result.metrics,
                            extra={"evaluation": evaluation}, overwrite=overwrite)
    return SavedHead(name, path, result)


def default_head_name(plan: EvaluationPlan, params: dict[str, Any],
                      task: str = "classification") -> str:
    """DATASET-POOL-HEAD, naming the head these parameters resolve to."""
    head = make_head(task, **params)
    return check_name(f"{plan.train_name}-{head.pool}-{head.head_kind}", "head")


def search_and_save(store: Store, plan: EvaluationPlan, task: str = "classification",
                    shots: int | None = None, repeats: int = 1, seed: int = 0,
                    name: str | None = None, budget: float = DEFAULT_BUDGET,
                    folds: int = DEFAULT_FOLDS, encoder: str | None = None,
                    fuse: tuple[str, ...] | None = None,
                    candidates: list[dict[str, Any]] | None = None,
                    unlabeled: str | None = None, progress: Any = None,
                    overwrite: bool = False, keep_predictions: bool = False) -> SavedHead:
    """`fit-head --auto`: search poolings x heads by inner CV inside every training sample of
    the plan, report the winners' evaluation scores, save the kept winner (default name
    DATASET-auto) with its search record in head.json; an existing head of that name is
    refused before the search, unless `overwrite`. `unlabeled` (a dataset) offers each search
    self-training on its rows, less the evaluation rows."""
    name = name or f"{plan.train_name}-auto"
    refuse_existing_head(store, name, overwrite)
    run = search_protocol(store, plan, task=task, shots=shots, repeats=repeats, seed=seed,
                          budget=budget, folds=folds, candidates=candidates, encoder=encoder,
                          fuse=fuse, unlabeled=unlabeled, progress=progress,
                          keep_predictions=keep_predictions)
    result = run.result
    evaluation = {**result.summary(), "shots": shots, "repeats": repeats if shots else None}
    extra = {"evaluation": evaluation}
    if len(run.searches) > 1:
        extra["other_searches"] = [{"winner": s.best_name_, "inner_score": s.best_score_}
                                   for s in run.searches[1:]]
    path = run.searches[0].save(store, name, metrics=result.metrics, extra=extra,
                                overwrite=overwrite)
    return SavedHead(name, path, result, run.searches)


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
              folds: int = DEFAULT_FOLDS, overwrite: bool = False) -> SavedHead:
    """Choose among the grid's configurations by inner CV on the training rows (never by the
    leaderboard's evaluation scores), refit the winner on all training rows, save it as `name`
    with its search record."""
    refuse_existing_head(store, name, overwrite)
    done = [e for e in ranked if e.result]
    # one of the compared configurations is saved, so no mix of them
    search = HeadSearch(task=task, budget=budget, folds=folds, candidates=[e.params for e in done],
                        label_col=plan.label_col, ensemble=False, seed=seed)
    search.fit(store, plan.train, valid=plan.valid)
    chosen = done[search.best_index_]
    metrics = (search.best_estimator_.evaluate(store, plan.eval) if plan.eval is not None
               else chosen.result.metrics)
    evaluation = {**chosen.result.summary(), "metrics_from": "the winner refitted on all "
                  "training rows" if plan.eval is not None else "the leaderboard's CV run"}
    path = search.save(store, name, metrics=metrics, extra={"evaluation": evaluation},
                       overwrite=overwrite)
    result = ProtocolResult(metrics, [metrics], search.best_estimator_, plan,
                            search.refit_seconds_, [])
    return SavedHead(name, path, result, [search])


def probe_all_layers(store: Store, plan: EvaluationPlan, encoder: str | None, c: float,
                     seed: int = 0, progress: Any = None) -> tuple[str, list[dict[str, Any]]]:
    """The encoder's id and one row per stored layer and feature (see `probe_layers`)."""
    enc = store.resolve_encoder(encoder, kind="encoder")
    return enc, probe_layers(store, plan, enc, c=c, seed=seed, progress=progress)


def describe_heads(store_path: str | Path | None) -> list[dict[str, Any]]:
    """One row per saved head: name, task, pooling, head kind, training dataset, its primary
    score and when it was made; a damaged head is listed with the reason instead."""
    root = default_store_path(store_path)
    if not (root / "manifest.json").is_file():
        open_store(root)  # the one-line "no store" error
    rows = []
    for name in list_heads(root):
        try:
            doc = read_head_json(root, name)
        except HeadError as exc:
            rows.append({"name": name, "task": "-", "pool": "-", "head": "-", "dataset": None,
                         "metric": "-", "score": None, "created": f"damaged: {exc}"})
            continue
        cfg = doc.get("config", {})
        task = cfg.get("task", "classification")
        metric = primary_metric(task)
        rows.append({"name": name, "task": task, "pool": cfg.get("pool"),
                     "head": cfg.get("head"),
                     "dataset": doc.get("evaluation", {}).get("train"), "metric": metric,
                     "score": doc.get("metrics", {}).get(metric),
                     "created": doc.get("created", "")})
    return rows


REPORT_FILES = ("classes.csv", "confusion.png", "errors.csv")


def report_paths(directory: str | Path, overwrite: bool = False) -> dict[str, Path]:
    """The files `--report DIR` writes; existing ones are refused (before any training) unless
    `overwrite`."""
    base = Path(directory)
    if base.exists() and not base.is_dir():
        raise HeadError(f"--report {base}: not a directory")
    paths = {Path(f).stem: base / f for f in REPORT_FILES}
    taken = [str(p) for p in paths.values() if p.exists()]
    if taken and not overwrite:
        raise HeadError(f"--report would replace {', '.join(taken)}; pass --overwrite or "
                        "another directory")
    return paths


def write_report(store: Store, saved: SavedHead, directory: str | Path,
                 overwrite: bool = False) -> tuple[ClassReport, dict[str, Path]]:
    """Per-class scores, a confusion matrix PNG and the misclassified rows of the evaluation
    rows (every fold or repeat pooled), from a run made with `keep_predictions`."""
    result = saved.result
    if result.predictions is None:
        raise HeadError("a report needs a classification run made with keep_predictions")
    paths = report_paths(directory, overwrite)
    Path(directory).mkdir(parents=True, exist_ok=True)
    plan = result.plan
    texts: dict[str, str] = {}
    for name, rows in ((plan.train_name, plan.train), (plan.eval_name, plan.eval)):
        entry = store.manifest.datasets.get(str(name).split(":")[0]) if name else None
        if rows is not None and entry is not None and entry.text_column in rows.columns:
            texts.update(zip(rows[KEY_COLUMN], rows[entry.text_column].astype(str),
                             strict=True))
    report = class_report(result.predictions, texts)
    report.per_class.round(4).to_csv(paths["classes"], index=False)
    report.errors.to_csv(paths["errors"], index=False)
    confusion_chart(report.matrix, report.classes,
                    f"{plan.train_name} · head {saved.name}\n{plan.protocol}",
                    paths["confusion"])
    return report, paths
