"""`HeadEnsemble`: classifiers of different poolings or heads, their probabilities averaged
with weights; what `fit-head --auto` keeps when the inner CV says a mix beats every single
candidate. `select_ensemble` chooses the mix from out-of-fold probabilities (Caruana et al.,
2004: greedy forward selection with replacement), never from evaluation rows.

Saved as one head: each member's arrays under `m{i}.` in one safetensors file, each member's
document under `members` in head.json, so a member loads exactly as the single head it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from featstore.heads.artifacts import restore_head, write_head
from featstore.heads.errors import HeadError
from featstore.heads.estimator import HeadClassifier, HeadEstimator, HeadNotFittedError
from featstore.heads.inputs import InputLayout
from featstore.heads.metrics import classification_scores
from featstore.heads.rows import Data, keys_and_labels, store_and_data
from featstore.store import Store

MAX_ROUNDS = 10  # greedy additions (with replacement) before the selection stops


def select_ensemble(probas: Sequence[np.ndarray], truth: np.ndarray,
                    rounds: int = MAX_ROUNDS) -> tuple[list[int], float]:
    """(picks per candidate, accuracy of the mix): start from the most accurate candidate and
    add, with replacement, whichever candidate makes the averaged probabilities most accurate;
    keep the shortest prefix that reached the best accuracy, so a mix is kept only where it
    beats the best single candidate. Ties go to the earlier candidate."""
    if not probas:
        raise HeadError("no candidate probabilities to select an ensemble from")
    total = np.zeros_like(probas[0], dtype=np.float64)
    counts = [0] * len(probas)
    best_counts, best_acc = list(counts), -1.0
    for _ in range(rounds):
        accs = [float(np.mean((total + p).argmax(axis=1) == truth)) for p in probas]
        pick = int(np.argmax(accs))  # first of the best
        total += probas[pick]
        counts[pick] += 1
        if accs[pick] > best_acc:
            best_acc, best_counts = accs[pick], list(counts)
    return best_counts, best_acc


class HeadEnsemble(ClassifierMixin, BaseEstimator):
    """A weighted average of classifiers' probabilities, each a `HeadClassifier` trained on the
    same rows.

    `members`: the members' parameter dicts (anything `HeadClassifier` takes); `weights`: one
    positive weight each (default equal). After `fit`: `members_`, `weights_` (summing to 1),
    `classes_`. `predict_proba` averages the members' probabilities; `save`/`load` keep every
    member.
    """

    task = "classification"

    def __init__(self, members: Sequence[dict[str, Any]] = (),
                 weights: Sequence[float] | None = None, *,
                 store: str | Path | Store | None = None, label_col: str | None = None,
                 seed: int = 0) -> None:
        self.members = members
        self.weights = weights
        self.store = store
        self.label_col = label_col
        self.seed = seed

    def _check(self) -> np.ndarray:
        if not self.members or not all(isinstance(m, dict) for m in self.members):
            raise HeadError("an ensemble needs a list of member parameter dicts")
        w = np.ones(len(self.members)) if self.weights is None else \
            np.asarray(self.weights, dtype=np.float64)
        if w.shape != (len(self.members),) or not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise HeadError(f"an ensemble of {len(self.members)} members needs as many "
                            f"positive weights, got {self.weights}")
        return w / w.sum()

    def _split(self, X: Any, rest: tuple) -> tuple[Store, Any, tuple]:
        return store_and_data(X, rest, self.store)

    def fit(self, X: Any, y: Any = None, *args: Any, valid: Data | None = None,
            progress: object | None = None) -> HeadEnsemble:
        """Fit every member on the same rows (`valid` drives their early stopping)."""
        weights = self._check()
        store, data, rest = self._split(X, (y, *args))
        y = rest[0] if rest else None
        members = []
        for params in self.members:
            head = HeadClassifier(**{"seed": self.seed, **params, "label_col": self.label_col,
                                     "store": self.store})
            members.append(head.fit(store, data, y, valid=valid, progress=progress))
        self._adopt(members, weights)
        return self

    def _adopt(self, members: list[HeadEstimator], weights: np.ndarray) -> None:
        classes = [list(m.classes_) for m in members]
        if any(c != classes[0] for c in classes):
            raise HeadError("ensemble members disagree on the classes; fit them on the same rows")
        self.members_ = members
        self.weights_ = weights
        self.labels_ = members[0].labels_
        self.classes_ = members[0].classes_
        self.fit_info_: dict[str, Any] = {
            "rows": members[0].fit_info_.get("rows"),
            "train_seconds": round(sum(m.fit_info_.get("train_seconds", 0.0) for m in members),
                                   3),
            "members": [m.fit_info_ for m in members]}

    def check_fitted(self) -> None:
        if not hasattr(self, "members_"):
            raise HeadNotFittedError("this ensemble is not fitted yet; call fit first")

    @property
    def encoder_id_(self) -> str:
        """The first member's encoder id (a search's members share one encoder)."""
        self.check_fitted()
        return self.members_[0].encoder_id_

    @property
    def layouts_(self) -> list[InputLayout]:
        """What the members read from a store."""
        self.check_fitted()
        return [layout for m in self.members_ for layout in m.layouts_]

    def raw_output(self, X: Any, *args: Any) -> np.ndarray:
        """[n, n_classes] probabilities: the members' average, weighted."""
        self.check_fitted()
        return sum(w * m.raw_output(X, *args) for m, w in zip(self.members_, self.weights_,
                                                               strict=True))

    def predict_proba(self, X: Any, *args: Any) -> np.ndarray:
        return self.raw_output(X, *args)

    def predict(self, X: Any, *args: Any) -> np.ndarray:
        self.check_fitted()
        return np.array(self.labels_.decode(self.raw_output(X, *args).argmax(axis=1)),
                        dtype=object)

    def evaluate(self, X: Any, y: Any = None, *args: Any) -> dict[str, float]:
        """Accuracy and macro-F1 on labelled rows."""
        self.check_fitted()
        store, data, rest = self._split(X, (y, *args))
        y = rest[0] if rest else None
        _, labels, where = keys_and_labels(store, data, y, self.label_col, need_labels=True)
        truth = self.labels_.encode(labels, where)
        return classification_scores(truth, self.raw_output(store, data).argmax(axis=1))

    def score(self, X: Any, y: Any = None, *args: Any, sample_weight: Any = None) -> float:
        """Accuracy, as scikit-learn classifiers score."""
        if sample_weight is not None:
            raise HeadError("score takes no sample_weight")
        return self.evaluate(X, y, *args)["accuracy"]

    # -- save and load ------------------------------------------------------------------------
    def saved_config(self) -> dict[str, Any]:
        self.check_fitted()
        return {"task": self.task, "head": "ensemble",
                "pool": " + ".join(str(m.pool) for m in self.members_),
                "label_col": self.label_col, "seed": self.seed,
                "weights": [round(float(w), 6) for w in self.weights_]}

    def save(self, store: Store | str | Path, name: str, metrics: dict | None = None,
             extra: dict | None = None, overwrite: bool = False) -> Path:
        """Write the ensemble to STORE/heads/NAME; `load_head` reads it back. A head already
        saved under NAME is replaced only with `overwrite`."""
        self.check_fitted()
        tensors: dict[str, np.ndarray] = {}
        docs = []
        for i, m in enumerate(self.members_):
            arrays, doc = m.artifact()
            tensors.update({f"m{i}.{k}": v for k, v in arrays.items()})
            docs.append(doc)
        doc = {"kind": "ensemble", "config": self.saved_config(), "members": docs,
               "labels": self.labels_.classes, "metrics": metrics or {},
               "fit": {k: v for k, v in self.fit_info_.items() if k != "members"},
               **(extra or {})}
        return write_head(store, name, tensors, doc, overwrite=overwrite)

    @classmethod
    def load(cls, store: Store | str | Path, name: str) -> HeadEnsemble:
        return restore_head(store, name,
                            lambda doc, tensors: cls.from_artifact(doc, tensors, name, store))

    @classmethod
    def from_artifact(cls, doc: dict[str, Any], tensors: dict[str, np.ndarray], name: str,
                      store: Store | str | Path) -> HeadEnsemble:
        if doc.get("kind") != "ensemble":
            raise HeadError(f"head {name} is not an ensemble; load it with "
                            "featstore.heads.load_head")
        cfg = doc["config"]
        members = []
        for i, mdoc in enumerate(doc["members"]):
            prefix = f"m{i}."
            arrays = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            member = HeadEstimator.from_artifact(mdoc, arrays, name, store)
            if not isinstance(member, HeadClassifier):
                raise HeadError(f"head {name}: member {i} is not a classifier (damaged)")
            members.append(member)
        params = [{k: v for k, v in m.get_params().items() if k != "store"} for m in members]
        head = cls(params, list(cfg["weights"]), store=store,
                   label_col=cfg.get("label_col"), seed=int(cfg.get("seed", 0)))
        head._adopt(members, head._check())
        if list(head.classes_) != list(doc["labels"]):
            raise HeadError(f"head {name}: its members' classes do not match head.json "
                            "(damaged)")
        head.fit_info_ = {**doc.get("fit", {}), "members": [m.fit_info_ for m in members]}
        head.metrics_ = doc.get("metrics", {})
        return head


def load_head(store: Store | str | Path, name: str) -> HeadEstimator | HeadEnsemble:
    """Whichever head (classifier, regressor or ensemble) is saved as STORE/heads/NAME."""
    def restore(doc: dict[str, Any], tensors: dict[str, np.ndarray]) -> Any:
        if doc.get("kind") == "ensemble":
            return HeadEnsemble.from_artifact(doc, tensors, name, store)
        return HeadEstimator.from_artifact(doc, tensors, name, store)
    return restore_head(store, name, restore)
