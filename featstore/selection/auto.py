"""`HeadSelector`: the best pooling x head for a task, chosen by inner cross-validation on the
training rows alone, within a time budget; what `fit-head --auto` and `compare --save-best` run.

Every candidate trains from stored rows in seconds, so an honest search is cheap: candidates
(poolings x heads x a few hyperparameters, plus fusion sources the store holds) are scored on
stratified inner folds of the training rows, never on evaluation rows. The budget is spent by
racing: every candidate, cheapest first, is scored on the first fold; those within two
standard errors of the leader go on to the next fold (for regression, every candidate while
the budget allows, since the stack may weigh any of them, or the better half when mixes are
off), and so on, so a hopeless candidate costs one fold and the last fold is spent on the few
that can win.
The winner (best mean over the most folds any candidate completed) is refitted on all training
rows and saved with the whole search record. For classification, the held-out probabilities
of the candidates that completed every fold then go through greedy ensemble selection: a
weighted mix (`HeadEnsemble`) replaces the winner only when it is more accurate on those inner
folds than the winner alone; for regression, a ridge over their held-out predictions (a stack,
`EnsembleRegressor`) does, when its own out-of-fold score is higher. Given unlabeled rows,
self-training (see `self_training`) is scored on the same inner folds and kept only when it
beats the winner alone there. The candidates come from `candidates` (their recipes from
`recipes`).

With a budget that cuts the search short, which candidates were scored depends on the
machine's speed; with a budget that lets it finish, the same seed gives the same choice.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from featstore.heads.base import StoreHead
from featstore.heads.ensemble import HeadEnsemble
from featstore.heads.ensemble_regressor import EnsembleRegressor
from featstore.heads.errors import HeadError
from featstore.heads.estimator import HeadEstimator, make_head
from featstore.heads.kinds import VECTOR_PARTS, pooling
from featstore.heads.labels import LabelMap, label_column, regression_targets
from featstore.heads.metrics import primary_metric, scores
from featstore.heads.pair_estimator import make_pair_head
from featstore.heads.pair_rows import pair_rows
from featstore.heads.params import HEAD_SELECTOR, ParamSet
from featstore.heads.protocols import EvaluationPlan, ProtocolResult, run_protocol, trials
from featstore.heads.rows import Data, keys_and_labels
from featstore.heads.splits import FoldScores, inner_folds
from featstore.selection.candidates import (
    Candidate,
    default_candidates,
    describe,
    pair_candidates,
)
from featstore.selection.ensemble_selection import select_ensemble, stack_regressors
from featstore.selection.recipes import grown_recipe
from featstore.selection.self_training import class_probs, self_training_check, with_pseudo
from featstore.store import KEY_COLUMN, PAIR_KEY_COLUMNS, Store

REFIT_FACTOR = 1.5  # a refit on all rows costs about this many inner-fold fits
# an ensemble's torch members share the winner's seeds, so its refit costs about what the
# reserved refit of the winner does; estimates this close are within their own error
ENSEMBLE_SLACK = 1.25


@dataclass
class Trial(FoldScores):
    """A candidate's inner-CV record."""

    candidate: Candidate
    scores: list[float] = field(default_factory=list)
    seconds: float = 0.0
    status: str = "not run"  # scored on all folds | dropped after fold k | out of budget | skipped
    # each row's output from the fold that held it out: class probabilities, or a prediction
    oof: np.ndarray | None = None

    def fold_seconds(self) -> float:
        return self.seconds / len(self.scores) if self.scores else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.candidate.name, "params": self.candidate.params,
                "scores": [round(s, 6) for s in self.scores],
                "mean": None if not self.scores else round(self.mean, 6),
                "std": None if not self.scores else round(self.std, 6),
                "folds": len(self.scores), "seconds": round(self.seconds, 3),
                "status": self.status}


class HeadSelector(StoreHead):
    """Choose a pooling x head by inner CV on the training rows, refit the winner on all of them.

    `search_space`: parameter dicts to choose among, each as given (default:
    `default_candidates` for the store, whose torch heads are scored with one seed and refitted
    averaging `seeds`); `budget`: seconds for the search and the refit (estimated; at least one
    candidate is scored on one fold); `folds`: inner folds; `allow_ensemble`: let a mix of the
    finalists (regression: a stack) replace the winner when the inner folds say it is better.
    After `fit`: `best_params_`, `best_estimator_` (a fitted `HeadClassifier`, `HeadRegressor`,
    `HeadEnsemble` or `EnsembleRegressor`), `ensemble_` (the selection's record),
    `cv_results_` (one dict per candidate), `search_seconds_`, `refit_seconds_`; `predict`,
    `predict_proba`, `score` and `save` use the winner. The evaluation rows are never seen:
    `fit` is given training rows only. Its parameters are `HEAD_SELECTOR`'s
    (featstore.heads.params).
    """

    params: ClassVar[ParamSet] = HEAD_SELECTOR

    def _is_pairs(self, store: Store, data: Any) -> bool:
        """Whether the data are pairs: `pair_cols` given, a pair dataset, or a pair table's
        rows."""
        if self.pair_cols is not None:
            return True
        if isinstance(data, str):
            entry = store.manifest.datasets.get(data)
            return entry is not None and bool(entry.pair_columns)
        return isinstance(data, pd.DataFrame) and all(c in data.columns
                                                      for c in PAIR_KEY_COLUMNS)

    def _make(self, params: dict[str, Any]) -> StoreHead:
        """An unfitted candidate (a per-text head, or a pair head on pairs)."""
        if self.pairs_:
            return make_pair_head(self.task, **params)
        return make_head(self.task, **params)

    def _rows(self, store: Store, data: Data, y: Any) -> tuple[pd.DataFrame, str]:
        """Training rows as (key, label) with the label column's name; pairs keep their
        texts' keys and text columns."""
        if self.pairs_:
            rows = pair_rows(store, data, y, self.label_col, self.pair_cols, need_labels=True)
            frame = store.dataset(data) if isinstance(data, str) else data.reset_index(drop=True)
            col = "label"
            if y is None:
                col = label_column(frame, self.label_col, rows.where)
            keep = {KEY_COLUMN: rows.pair_keys, PAIR_KEY_COLUMNS[0]: rows.keys_a,
                    PAIR_KEY_COLUMNS[1]: rows.keys_b}
            if rows.texts is not None:
                keep.update({rows.columns[0]: [t[0] for t in rows.texts],
                             rows.columns[1]: [t[1] for t in rows.texts]})
            self.pair_columns_ = rows.columns
            return pd.DataFrame({**keep, col: list(rows.labels)}), col
        keys, labels, where = keys_and_labels(store, data, y, self.label_col, need_labels=True)
        col = "label"
        if y is None:
            df = store.dataset(data) if isinstance(data, str) else data
            col = label_column(df, self.label_col, where)
        return pd.DataFrame({KEY_COLUMN: keys, col: list(labels)}), col

    def fit(self, X: Any, y: Any = None, *args: Any, valid: Data | None = None,
            unlabeled: Data | None = None, progress: Any = None) -> HeadSelector:
        """Search on `X` (training rows only), refit the winner on all of them; `valid`
        rows, if given, only drive the refit's early stopping, as in a plain fit.
        `unlabeled` rows (classification; their labels, if any, are ignored) may join the
        refit under pseudo-labels when the inner folds say self-training helps; keep
        evaluation rows out of them."""
        store, data, y = self.store_data_y(X, y, args)
        self.validate_params()
        start = time.perf_counter()
        self.pairs_ = self._is_pairs(store, data)
        if self.pairs_ and unlabeled is not None:
            raise HeadError("unlabeled rows serve self-training of per-text heads; pair heads "
                            "take none")
        rows, col = self._rows(store, data, y)
        labels, codes, targets = None, None, None
        if self.task == "classification":
            labels = LabelMap.fit(rows[col])
            codes = labels.encode(rows[col], "the training rows")
        else:
            targets = regression_targets(rows[col], col, "the training rows")
        folds = inner_folds(codes, len(rows), int(self.folds), self.seed)
        if not folds:
            _no_inner_folds(codes, len(rows))
        per_class = len(rows) / (len(np.unique(codes)) if codes is not None else 1)
        cands = ([Candidate(describe(dict(p)), dict(p), float(i))
                  for i, p in enumerate(self.search_space)]
                 if self.search_space is not None else
                 pair_candidates(store, self.task, len(np.unique(codes)) if codes is not None
                                 else 0, self.encoder, self.fuse, int(self.seeds))
                 if self.pairs_ else
                 default_candidates(store, self.task, per_class, self.encoder, self.fuse,
                                    int(self.seeds)))
        if not cands:
            raise HeadError("no candidate configurations to search")
        order = sorted(range(len(cands)), key=lambda i: (cands[i].cost, i))
        found = [Trial(cands[i]) for i in order]
        metric = primary_metric(self.task)
        alive = list(found)
        # a regression stack can give weight to a weaker candidate that errs differently: every
        # candidate stays while the budget allows
        stacking = self.task == "regression" and self.allow_ensemble
        for k, (tr, te) in enumerate(folds):
            for t in alive:
                spent = time.perf_counter() - start
                if any(x.scores for x in found) and spent + next_fold_seconds(t, found) \
                        + _refit_estimate(_leader(found)) > self.budget:
                    t.status = "out of budget" if k == 0 else f"out of budget after fold {k}"
                    continue
                t0 = time.perf_counter()
                try:
                    head = self._make(self._fixed(t.candidate.params, col))
                    head.fit(store, rows.iloc[tr].reset_index(drop=True))
                    s = self._score_fold(t, head, store, rows.iloc[te].reset_index(drop=True),
                                         te, labels, codes, targets, metric)
                except HeadError as exc:
                    t.status = f"skipped: {exc}"
                    continue
                t.seconds += time.perf_counter() - t0
                t.scores.append(float(s) if np.isfinite(s) else -np.inf)
                t.status = f"scored on {len(t.scores)} fold(s)"
                if progress is not None:
                    progress.update(1)
            scored = [t for t in alive if len(t.scores) == k + 1]
            if not scored:
                break
            ranked = sorted(scored, key=_rank)
            held = sum(len(te) for _, te in folds[:k + 1])
            keep = len(scored) if k == len(folds) - 1 or stacking else \
                _survivors(ranked, held, self.task)
            for t in ranked[keep:]:
                t.status = f"dropped after fold {k + 1}"
            alive = ranked[:keep]
        best = _leader(found)
        if best is None:
            raise HeadError("no candidate could be scored on this store: "
                            + "; ".join(t.status for t in found[:3]))
        for t in found:
            if t.status.startswith("scored on") and len(t.scores) == len(folds):
                t.status = "all folds"
        best.status = "winner"
        self.ensemble_ = self._mix(found, best, codes, len(folds),
                                   self.budget - (time.perf_counter() - start)) \
            if targets is None else self._stack(found, best, targets, folds, metric,
                                                self.budget - (time.perf_counter() - start))
        self.best_name_ = best.candidate.name
        self.best_score_ = best.mean
        if self.ensemble_.get("chosen"):
            members = self.ensemble_["members"]
            self.best_params_ = {"members": [self._fixed(m["params"], col) for m in members]}
            if targets is None:
                self.best_params_["weights"] = [m["picks"] for m in members]
            else:
                self.best_params_["weights"] = [m["weight"] for m in members]
                self.best_params_["intercept"] = self.ensemble_["intercept"]
            self.best_name_ = self.ensemble_["name"]
            self.best_score_ = self.ensemble_["inner_score"]
        else:
            self.best_params_ = self._fixed({**best.candidate.params, **best.candidate.refit},
                                            col)
        unlabeled_rows = self._unlabeled_rows(store, unlabeled, rows, col)
        self.self_training_: dict[str, Any] = {"chosen": False, "why": "no unlabeled rows"}
        pseudo_probs = None
        if unlabeled_rows is not None and labels is not None and codes is not None:
            self.self_training_, pseudo_probs = self._self_train(
                store, rows, col, folds, labels, codes, unlabeled_rows,
                self.budget - (time.perf_counter() - start))
        self.search_seconds_ = round(time.perf_counter() - start, 3)
        t0 = time.perf_counter()
        fit_rows = rows
        if self.self_training_["chosen"] and unlabeled_rows is not None and labels is not None:
            fit_rows = with_pseudo(rows, col, unlabeled_rows, pseudo_probs, labels,
                                   np.bincount(codes, minlength=len(labels.classes)))
            self.self_training_["pseudo_rows"] = len(fit_rows) - len(rows)
            self.best_params_ = _each_member(self.best_params_, grown_recipe)
        self.best_estimator_: HeadEstimator | HeadEnsemble = self._estimator(self.best_params_,
                                                                             col)
        self.best_estimator_.fit(store, fit_rows, valid=valid)
        self.refit_seconds_ = round(time.perf_counter() - t0, 3)
        self.best_index_ = next(i for i, c in enumerate(cands) if c is best.candidate)
        self.n_folds_ = len(folds)
        self.metric_ = metric
        self.trials_ = found
        self.cv_results_ = [t.to_json() for t in found]
        self.fit_info_ = {"rows": len(rows), "search_seconds": self.search_seconds_,
                          "refit_seconds": self.refit_seconds_}
        return self

    def _score_fold(self, t: Trial, head: HeadEstimator, store: Store, held: pd.DataFrame,
                    te: np.ndarray, labels: LabelMap | None, codes: np.ndarray | None,
                    targets: np.ndarray | None, metric: str) -> float:
        """The fold's score; the held-out rows' outputs are kept in `t.oof` for a mix:
        probabilities for classification (columns in the order of all training rows'
        classes), predictions for regression."""
        if labels is None or codes is None:
            truth, out = head.truth_and_output(store, held, None)
            if targets is not None:
                if t.oof is None:
                    t.oof = np.zeros(len(targets), dtype=np.float64)
                t.oof[te] = out
            return scores(self.task, truth, out)[metric]
        if t.oof is None:
            t.oof = np.zeros((len(codes), len(labels.classes)), dtype=np.float32)
        t.oof[te] = class_probs(head, store, held, labels)
        return scores(self.task, codes[te], t.oof[te].argmax(axis=1))[metric]

    def _mix(self, found: list[Trial], best: Trial, codes: np.ndarray | None, n_folds: int,
             left: float) -> dict[str, Any]:
        """The ensemble record: greedy selection over the out-of-fold probabilities of the
        candidates scored on every fold, chosen only when a mix of two or more is more
        accurate on the inner folds than the best single candidate and its refit fits the
        budget: the time left, or (within ENSEMBLE_SLACK) what was reserved for the winner's
        refit, since torch members share the winner's seeds by their picks."""
        if not self.allow_ensemble:
            return {"chosen": False, "why": "ensembles are off"}
        if codes is None:
            return {"chosen": False, "why": "ensembles are for classification"}
        finalists = sorted((t for t in found if len(t.scores) == n_folds and t.oof is not None),
                           key=_rank)
        if len(finalists) < 2:
            return {"chosen": False, "why": "fewer than two candidates were scored on every fold"}
        picks, acc = select_ensemble([t.oof for t in finalists], codes)
        total = sum(picks)
        members, cost = [], 0.0
        for t, k in zip(finalists, picks, strict=True):
            if not k:
                continue
            params = dict(t.candidate.params)
            if "seeds" in t.candidate.refit:
                params["seeds"] = max(1, round(self.seeds * k / total))
            cost += REFIT_FACTOR * t.fold_seconds() * params.get("seeds", 1) \
                / t.candidate.params.get("seeds", 1)
            members.append({"name": t.candidate.name, "params": params, "picks": k})
        single = float(np.mean(finalists[0].oof.argmax(axis=1) == codes))
        record: dict[str, Any] = {
            "method": "greedy forward selection with replacement over the out-of-fold "
                      "probabilities of the candidates scored on every inner fold",
            "inner_score": round(acc, 6), "single_best_inner_score": round(single, 6),
            "members": members, "chosen": False, "refit_estimate_seconds": round(cost, 3),
            "name": "ensemble of " + " + ".join(f"{m['name']} ({m['picks']}/{total})"
                                                for m in members)}
        if len(members) < 2 or acc <= single:
            record["why"] = "no mix beat the best single candidate on the inner folds"
        elif cost > max(left, ENSEMBLE_SLACK * _refit_estimate(best)):
            record["why"] = f"its refit (about {cost:.0f} s) would not fit the budget"
        else:
            record["chosen"] = True
            names = {m["name"]: m["picks"] for m in members}
            for t in finalists:
                if t.candidate.name in names:
                    t.status = f"in the ensemble ({names[t.candidate.name]}/{total})"
        return record

    def _stack(self, found: list[Trial], best: Trial, targets: np.ndarray,
               folds: list[tuple[np.ndarray, np.ndarray]], metric: str, left: float
               ) -> dict[str, Any]:
        """The regression stack's record: a ridge regression over the out-of-fold predictions
        of the candidates scored on every inner fold (`stack_regressors`), chosen only when
        its own out-of-fold score beats the best single candidate's on the same rows and its
        members' refits fit the budget (or, within ENSEMBLE_SLACK, the winner's reserve).
        Where they do not, the costliest refits leave the stack one by one (the ridge refitted
        on the rest) until it fits or two members are left."""
        if not self.allow_ensemble:
            return {"chosen": False, "why": "ensembles are off"}
        finalists = sorted((t for t in found if len(t.scores) == len(folds)
                            and t.oof is not None), key=_rank)
        if len(finalists) < 2:
            return {"chosen": False, "why": "fewer than two candidates were scored on every fold"}
        def score(truth: np.ndarray, pred: np.ndarray) -> float:
            return float(scores(self.task, truth, pred)[metric])

        single = score(targets, finalists[0].oof)
        allowed = max(left, ENSEMBLE_SLACK * _refit_estimate(best))
        left_out: list[str] = []
        while sum(_refit_estimate(t) for t in finalists) > allowed and len(finalists) > 2:
            costliest = max(finalists, key=_refit_estimate)
            finalists = [t for t in finalists if t is not costliest]
            left_out.append(costliest.candidate.name)
        weights, intercept, stacked = stack_regressors([t.oof for t in finalists], targets,
                                                       folds, score)
        # each member refitted as it would win alone (torch heads with all their seeds:
        # `_refit_estimate` counts them)
        members = [{"name": t.candidate.name,
                    "params": {**t.candidate.params, **t.candidate.refit},
                    "weight": float(w)} for t, w in zip(finalists, weights, strict=True)]
        cost = sum(_refit_estimate(t) for t in finalists)
        record: dict[str, Any] = {
            "method": "ridge regression (stacking) over the out-of-fold predictions of the "
                      "candidates scored on every inner fold, scored out of fold itself",
            "inner_score": round(stacked, 6), "single_best_inner_score": round(single, 6),
            "members": members, "intercept": intercept, "chosen": False,
            "refit_estimate_seconds": round(cost, 3),
            "left_out_for_budget": left_out,
            "name": "stack of " + " + ".join(f"{m['name']} ({m['weight']:+.3g})"
                                             for m in members)}
        if stacked <= single:
            record["why"] = "the stack did not beat the best single candidate on the inner folds"
        elif cost > allowed:
            record["why"] = f"its refit (about {cost:.0f} s) would not fit the budget"
        else:
            record["chosen"] = True
            for t, m in zip(finalists, members, strict=True):
                t.status = f"in the stack (weight {m['weight']:+.3g})"
            for t in found:
                if t.candidate.name in left_out:
                    t.status = "left out of the stack: its refit would not fit the budget"
        return record

    def _estimator(self, params: dict[str, Any], col: str
                   ) -> HeadEstimator | HeadEnsemble | EnsembleRegressor:
        """An unfitted winner from parameters shaped as `best_params_` (one head's, or an
        ensemble's `members` and `weights`, and a regression stack's `intercept`)."""
        if "members" in params and self.task == "regression":
            return EnsembleRegressor(params["members"], params["weights"], params["intercept"],
                                     store=self.store, label_col=col,
                                     unit="pair" if self.pairs_ else "text", seed=self.seed)
        if "members" in params:
            return HeadEnsemble(params["members"], params["weights"], store=self.store,
                                label_col=col, unit="pair" if self.pairs_ else "text",
                                seed=self.seed)
        return self._make({**params, "store": self.store})

    def _unlabeled_rows(self, store: Store, unlabeled: Data | None, rows: pd.DataFrame,
                        col: str) -> pd.DataFrame | None:
        """The unlabeled rows as unique keys, less those among the training rows; None when
        there are none."""
        if unlabeled is None:
            return None
        if self.task != "classification":
            raise HeadError("unlabeled rows serve self-training, which needs --task "
                            "classification")
        keys, _, where = keys_and_labels(store, unlabeled, None, None, need_labels=False)
        known = set(rows[KEY_COLUMN])
        keep = [k for k in dict.fromkeys(keys) if k not in known]
        if not keep:
            return None
        keep_rows = pd.DataFrame({KEY_COLUMN: keep})
        make_head(self.task, **self._fixed({"pool": "mean"}, col)).check_inputs(
            store, keep_rows, where)
        return keep_rows

    def _self_train(self, store: Store, rows: pd.DataFrame, col: str,
                    folds: list[tuple[np.ndarray, np.ndarray]], labels: LabelMap,
                    codes: np.ndarray, unlabeled: pd.DataFrame, left: float
                    ) -> tuple[dict[str, Any], np.ndarray | None]:
        """Self-training scored on the inner folds with the winner's search-time
        configuration (one seed per torch head); the check and the final refit (estimated
        from a fold's grown fit) must fit in the `left` seconds."""
        one = _each_member(self.best_params_,
                           lambda m: {**m, "seeds": 1} if "seeds" in m else m)
        grown = _each_member(one, grown_recipe)
        # the refit has more rows (as the search's refit) and each torch member's seeds
        refit = self.best_params_.get("members", [self.best_params_])
        scale = REFIT_FACTOR * sum(m.get("seeds", 1) for m in refit) / len(refit)
        try:
            return self_training_check(lambda: self._estimator(one, col),
                                       lambda: self._estimator(grown, col), store, rows, col,
                                       folds, labels, codes, unlabeled, left, scale)
        except HeadError as exc:
            return {"chosen": False, "why": f"skipped: {exc}"}, None

    def _fixed(self, params: dict[str, Any], col: str) -> dict[str, Any]:
        pairs = {"pair_cols": tuple(self.pair_columns_)} if self.pairs_ else {}
        return {**params, "label_col": col, "seed": self.seed, **pairs,
                **({"encoder": self.encoder} if self.encoder is not None else {})}

    # -- the winner ---------------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        """The search as JSON: what was tried, how it scored on inner folds, what won."""
        self.check_fitted()
        return {"method": "racing over stratified inner folds of the training rows",
                "metric": self.metric_, "folds": self.n_folds_, "budget_seconds": self.budget,
                "seed": self.seed, "seconds": self.search_seconds_,
                "refit_seconds": self.refit_seconds_, "winner": self.best_name_,
                "winner_inner_score": round(self.best_score_, 6),
                "ensemble": self.ensemble_, "self_training": self.self_training_,
                "candidates": self.cv_results_}

    def predict(self, *args: Any) -> np.ndarray:
        self.check_fitted()
        return self.best_estimator_.predict(*args)

    def predict_proba(self, *args: Any) -> np.ndarray:
        self.check_fitted()
        return self.best_estimator_.predict_proba(*args)

    @property
    def encoder_id_(self) -> str:
        """The winner's encoder id."""
        self.check_fitted()
        return self.best_estimator_.encoder_id_

    @property
    def classes_(self) -> np.ndarray:
        """The winner's classes: column i of `predict_proba` is `classes_[i]`."""
        self.check_fitted()
        return self.best_estimator_.classes_

    def truth_and_output(self, store: Store, data: Any, y: Any, allow_unseen: bool = False
                         ) -> tuple[np.ndarray, np.ndarray]:
        return self.best_estimator_.truth_and_output(store, data, y, allow_unseen)

    def class_metrics(self, truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
        return self.best_estimator_.class_metrics(truth, pred)

    def save(self, store: Store | str | Path, name: str, metrics: dict | None = None,
             extra: dict | None = None, overwrite: bool = False) -> Path:
        """The winner, saved as any head (it loads with `load_head`), with the search record
        under `search` in head.json; an existing head of that name only with `overwrite`."""
        self.check_fitted()
        return self.best_estimator_.save(store, name, metrics, {"search": self.record(),
                                                                **(extra or {})},
                                         overwrite=overwrite)

    def protocol_notes(self, plan: Any, refitted: bool, first: StoreHead) -> list[str]:
        notes = [f"chosen by {first.n_folds_}-fold inner CV on the training rows; the "  # type: ignore[attr-defined]
                 "evaluation rows scored only the winner"]
        if refitted:
            notes.append(f"metrics are the mean over {plan.cv} outer folds, each with its own "
                         "search; the saved head comes from a search on all training rows")
        return notes


def _no_inner_folds(codes: np.ndarray | None, n: int) -> None:
    """Why the training rows cannot be split into two inner folds."""
    if codes is None:
        raise HeadError(f"--auto needs at least 4 training rows for inner CV, got {n}")
    smallest = int(np.bincount(codes)[np.bincount(codes) > 0].min())
    raise HeadError("--auto scores candidates by inner CV on the training rows; it needs "
                    f"at least 2 examples of every class, the smallest has {smallest}")


def _each_member(params: dict[str, Any], change: Callable[[dict[str, Any]], dict[str, Any]]
                 ) -> dict[str, Any]:
    """`best_params_`-shaped parameters with `change` applied to each member's (or the one
    head's) parameter dict."""
    if "members" in params:
        return {**params, "members": [change(m) for m in params["members"]]}
    return change(params)


def input_width(params: dict[str, Any]) -> int:
    """How many stored vectors a candidate's row is made of (layers x features read, times
    the parts a pair row repeats them in): what a head's fold time grows with."""
    pool = params.get("pool") or "mean"
    kind = pooling(pool)
    layers = len(params.get("layers") or ()) or (4 if kind.layers == "top4" else 1)
    parts = [p for p in params.get("combine") or () if p in VECTOR_PARTS]
    return layers * len(kind.features(params.get("of"))) * max(1, len(parts))


def next_fold_seconds(t: Trial, found: list[Trial]) -> float:
    """Seconds one more fold of `t` should take: its own last folds, else the slowest fold of
    a scored candidate with the same head, scaled up by how many more stored vectors `t`
    reads (`input_width`), else (a head not run yet: candidates run cheapest first, so it is
    likely no faster) the slowest fold of any scored candidate."""
    if t.scores:
        return t.fold_seconds()
    kind = t.candidate.params.get("head")
    width = input_width(t.candidate.params)
    scored = [x.fold_seconds() for x in found if x.scores]
    same = [x.fold_seconds() * max(1.0, width / input_width(x.candidate.params))
            for x in found if x.scores and x.candidate.params.get("head") == kind]
    return max(same or scored, default=0.0)


def _refit_estimate(t: Trial | None) -> float:
    """Seconds a candidate's refit on all rows should take (more rows, more seeds): the
    leader's, or a stack member's."""
    if t is None:
        return 0.0
    seeds = t.candidate.refit.get("seeds", 1) / t.candidate.params.get("seeds", 1)
    return REFIT_FACTOR * t.fold_seconds() * seeds


RACE_Z = 2.0  # standard errors behind the leader at which a classifier candidate is dropped


def _survivors(ranked: list[Trial], held: int, task: str) -> int:
    """How many of the ranked candidates go on to the next fold. Classification races them:
    a candidate stays while its mean accuracy is within RACE_Z standard errors of the leader's
    (the binomial error over the `held` rows scored so far), so a close candidate that may win
    or join the ensemble is not dropped by a coin toss, and a hopeless one costs one fold.
    Regression halves them. At least two go on."""
    if task == "classification":
        p = min(max(ranked[0].mean, 0.0), 1.0)
        margin = RACE_Z * math.sqrt(max(p * (1 - p), 1e-4) / max(held, 1))
        close = sum(1 for t in ranked if ranked[0].mean - t.mean <= margin)
        return max(2, close)
    return max(2, math.ceil(len(ranked) / 2))


def _rank(t: Trial) -> tuple[float, float]:
    return (-t.mean, t.candidate.cost)


def _leader(found: list[Trial]) -> Trial | None:
    """The best mean among the candidates scored on the most folds."""
    most = max((len(t.scores) for t in found), default=0)
    if most == 0:
        return None
    return min((t for t in found if len(t.scores) == most), key=_rank)


@dataclass
class SearchRun:
    """A protocol run of the selector: its result, and each trial's fitted selector (the one
    kept first)."""

    result: ProtocolResult
    searches: list[HeadSelector]


def auto_protocol(store: Store, p: EvaluationPlan, task: str = "classification",
                  shots: int | None = None, repeats: int = 1, seed: int = 0,
                  budget: float = HEAD_SELECTOR["budget"].default,
                  folds: int = HEAD_SELECTOR["folds"].default,
                  search_space: Sequence[dict[str, Any]] | None = None,
                  encoder: str | None = None, fuse: Sequence[str] | None = None,
                  unlabeled: Data | None = None, progress: Any = None,
                  keep_predictions: bool = False) -> SearchRun:
    """The plan's protocol with a search inside every training sample: the split's train rows,
    each few-shot sample, each outer CV fold (plus, for CV, one search on all rows for the head
    kept). The budget is shared equally; evaluation rows only score each trial's winner.
    `unlabeled` rows offer self-training to every search, less the plan's evaluation and dev
    rows (and each search's own training rows): evaluation texts are never used, not even
    without their labels."""
    if shots is not None and shots < 1:
        raise HeadError(f"--shots must be at least 1, got {shots}")
    if repeats < 1:
        raise HeadError(f"--repeats must be at least 1, got {repeats}")
    final = bool(p.cv and not shots)
    share = budget / (len(trials(p, task, shots, repeats, seed)) + int(final))

    unlabeled_keys = None
    if unlabeled is not None:
        keys, _, _ = keys_and_labels(store, unlabeled, None, None, need_labels=False)
        unlabeled_keys = pd.DataFrame({KEY_COLUMN: keys})
        if p.valid is not None:
            unlabeled_keys = unlabeled_keys[~unlabeled_keys[KEY_COLUMN].isin(p.valid[KEY_COLUMN])]

    pair_cols = tuple(p.unit.text_columns) if p.unit.name == "pair" else None

    def selector() -> HeadSelector:
        return HeadSelector(task=task, budget=share, folds=folds, search_space=search_space,
                            encoder=encoder, fuse=fuse, label_col=p.label_col,
                            pair_cols=pair_cols, seed=seed)

    def fit_args(ev: pd.DataFrame | None) -> dict[str, Any]:
        mine = unlabeled_keys
        if mine is not None and ev is not None:
            mine = mine[~mine[KEY_COLUMN].isin(ev[KEY_COLUMN])]
        return {"progress": progress,
                "unlabeled": mine if mine is not None and len(mine) else None}

    result = run_protocol(store, p, task=task, shots=shots, repeats=repeats, seed=seed,
                          refit=final, keep_predictions=keep_predictions, estimator=selector,
                          fit_args=fit_args)
    return SearchRun(result, list(result.heads))  # type: ignore[arg-type]
