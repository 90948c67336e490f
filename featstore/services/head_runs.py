"""Fitting heads as the command line does, for notebooks too, whatever the unit of example:
the data plan (featurizing --train/--eval files first), one protocol run and its saved head,
the `--auto` selection and its saved winner, and the saved heads listed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featstore.featurize.corpus import open_corpus
from featstore.featurize.errors import CorpusError
from featstore.heads.artifacts import refuse_existing_head
from featstore.heads.base import StoreHead
from featstore.heads.errors import HeadError
from featstore.heads.names import head_name, sources_suffix
from featstore.heads.params import DECLARED, HEAD_SELECTOR
from featstore.heads.protocols import (
    EvaluationPlan,
    ProtocolResult,
    check_protocol,
    plan_evaluation,
    run_protocol,
    unit_estimator,
)
from featstore.heads.units import TEXT, Unit
from featstore.selection.auto import HeadSelector, auto_protocol
from featstore.services.datasets import dataset_for, read_rows_file
from featstore.services.featurizing import Say
from featstore.store import (
    KEY_COLUMN,
    Store,
    clean_text,
    default_store_path,
    open_store,
)


def plan_data(store_path: str | Path | None, train: str | None = None, eval: str | None = None,  # noqa: A002
              cv: int | None = None, label_col: str | None = None,
              task: str = "classification", model: str | None = None, tokens: bool = False,
              progress: bool = True, say: Say | None = None, unit: Unit = TEXT,
              allow_unseen_labels: bool = False, pair_cols: Sequence[str] | None = None
              ) -> tuple[Store, EvaluationPlan]:
    """The store and the evaluation plan; --train/--eval corpus files are featurized first
    (with `pair_cols`, as pair corpora). A pair dataset to train on makes the plan's unit a
    pair. `allow_unseen_labels`: evaluation labels the training rows never show are scored as
    errors."""
    DECLARED["task"].check(task)
    if eval is not None and cv is not None:
        raise HeadError("use either --eval or --cv, not both")
    for value in (train, eval):  # a file's examples are checked before it is featurized
        check_examples_file(store_path, value, unit, label_col)
    train_name = dataset_for(store_path, train, model, tokens, progress, say, pair_cols)
    eval_name = dataset_for(store_path, eval, model, tokens, progress, say, pair_cols)
    store = open_store(store_path)
    return store, plan_evaluation(store, train_name, eval_name, cv, label_col, task, unit,
                                  allow_unseen_labels)


def check_examples_file(store_path: str | Path | None, value: str | None, unit: Unit,
                        label_col: str | None) -> None:
    """Make a corpus file's rows into examples as its dataset would be made (a sequence's
    group, order and time columns), so a bad column is refused before the file is featurized
    into the store."""
    if unit.lone_texts or value is None or not Path(value).is_file():
        return
    root = default_store_path(store_path)
    if (root / "manifest.json").is_file() and value in open_store(root).manifest.datasets:
        return
    try:
        text_col = open_corpus(value).text_column
    except CorpusError:
        return  # featurize says what is wrong with the file itself
    rows = read_rows_file(value, "--train")
    rows = rows[[clean_text(v) is not None for v in rows[text_col].tolist()]]
    rows = rows.reset_index(drop=True).assign(**{KEY_COLUMN: ""})
    rows, col = unit.with_labels(rows, label_col, str(value))
    unit.examples(rows, col, str(value))


@dataclass
class SavedHead:
    name: str
    path: Path
    result: ProtocolResult
    searches: list[HeadSelector] | None = None


def check_fit(store: Store, plan: EvaluationPlan, params: dict[str, Any],
              task: str = "classification", shots: int | None = None, repeats: int = 1,
              seed: int = 0) -> None:
    """Refuse, before any work is shown, what `fit_and_save` would refuse before training."""
    check_protocol(store, plan, unit_estimator(plan, params, task, seed), task, shots, repeats,
                   seed)


def fit_and_save(store: Store, plan: EvaluationPlan, params: dict[str, Any],
                 task: str = "classification", shots: int | None = None, repeats: int = 1,
                 seed: int = 0, name: str | None = None, progress: Any = None,
                 overwrite: bool = False, keep_predictions: bool = False) -> SavedHead:
    """Run one configuration under the plan and save the head it keeps as `name` (default
    DATASET-POOL-HEAD, or DATASET-seq-KIND), its metrics and protocol in head.json. An existing
    head of that name is refused before any training, unless `overwrite`."""
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
    """DATASET-NAME, the estimator these parameters make naming itself (`default_name`)."""
    head: StoreHead = plan.unit.estimator(task, params)
    return head_name(plan.train_name, head.default_name())


def select_and_save(store: Store, plan: EvaluationPlan, task: str = "classification",
                    shots: int | None = None, repeats: int = 1, seed: int = 0,
                    name: str | None = None, budget: float = HEAD_SELECTOR["budget"].default,
                    folds: int = HEAD_SELECTOR["folds"].default, encoder: str | None = None,
                    fuse: tuple[str, ...] | None = None,
                    search_space: list[dict[str, Any]] | None = None,
                    unlabeled: str | None = None, progress: Any = None,
                    overwrite: bool = False, keep_predictions: bool = False) -> SavedHead:
    """`fit-head --auto`: choose poolings x heads by inner CV inside every training sample of
    the plan, report the winners' evaluation scores, save the kept winner (default name
    DATASET-auto) with its search record in head.json; an existing head of that name is
    refused before the search, unless `overwrite`. `unlabeled` (a dataset) offers each search
    self-training on its rows, less the evaluation rows."""
    name = name or head_name(plan.train_name, "auto" + sources_suffix(encoder, fuse))
    refuse_existing_head(store, name, overwrite)
    run = auto_protocol(store, plan, task=task, shots=shots, repeats=repeats, seed=seed,
                        budget=budget, folds=folds, search_space=search_space, encoder=encoder,
                        fuse=fuse, unlabeled=unlabeled, progress=progress,
                        keep_predictions=keep_predictions)
    result = run.result
    evaluation = {**result.summary(), "shots": shots, "repeats": repeats if shots else None}
    extra: dict[str, Any] = {"evaluation": evaluation}
    if len(run.searches) > 1:
        extra["other_searches"] = [{"winner": s.best_name_, "inner_score": s.best_score_}
                                   for s in run.searches[1:]]
    path = run.searches[0].save(store, name, metrics=result.metrics, extra=extra,
                                overwrite=overwrite)
    return SavedHead(name, path, result, run.searches)
