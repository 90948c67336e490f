"""`HeadEnsemble`: classifiers of different poolings or heads, their probabilities averaged
with weights; what `fit-head --auto` keeps when the inner CV says a mix beats every single
candidate (`featstore.selection.ensemble_selection` chooses the mix).

Saved as one head: each member's arrays under `m{i}.` in one safetensors file, each member's
document under `members` in head.json, so a member loads exactly as the single head it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import ClassifierMixin

from featstore.heads.base import StoreHead, saved_as
from featstore.heads.errors import HeadError, ParamError
from featstore.heads.estimator import HeadClassifier
from featstore.heads.inputs import InputLayout
from featstore.heads.pair_estimator import PairClassifier
from featstore.heads.params import HEAD_ENSEMBLE, ParamSet
from featstore.heads.rows import Data, keys_and_labels
from featstore.store import Store


@saved_as("ensemble")
class HeadEnsemble(ClassifierMixin, StoreHead):
    """A weighted average of classifiers' probabilities, each a `HeadClassifier` (with
    `unit="pair"`, a `PairClassifier`) trained on the same rows.

    `members`: the members' parameter dicts (anything the member class takes); `weights`: one
    positive weight each (default equal). After `fit`: `members_`, `weights_` (summing to 1),
    `classes_`. `predict_proba` averages the members' probabilities; `save`/`load` keep every
    member.
    """

    params: ClassVar[ParamSet] = HEAD_ENSEMBLE

    def check_combination(self) -> None:
        self._weights()

    def _weights(self) -> np.ndarray:
        if not self.members or not all(isinstance(m, dict) for m in self.members):
            raise ParamError("an ensemble needs a list of member parameter dicts ({members})")
        w = np.ones(len(self.members)) if self.weights is None else \
            np.asarray(self.weights, dtype=np.float64)
        if w.shape != (len(self.members),) or not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise ParamError(f"an ensemble of {len(self.members)} members needs as many "
                             f"positive {{weights}}, got {self.weights}")
        return w / w.sum()

    def fit(self, X: Any, y: Any = None, *args: Any, valid: Data | None = None,
            progress: object | None = None) -> HeadEnsemble:
        """Fit every member on the same rows (`valid` drives their early stopping)."""
        store, data, y = self.store_data_y(X, y, args)
        self.validate_params()
        weights = self._weights()
        members = []
        member = PairClassifier if self.unit == "pair" else HeadClassifier
        for params in self.members:
            head = member(**{"seed": self.seed, **params, "label_col": self.label_col,
                             "store": self.store})
            members.append(head.fit(store, data, y, valid=valid, progress=progress))
        self._adopt(members, weights)
        return self

    def _adopt(self, members: list[StoreHead], weights: np.ndarray) -> None:
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

    def predict_proba(self, X: Any, *args: Any) -> np.ndarray:
        """[n, n_classes] probabilities: the members' average, weighted."""
        self.check_fitted()
        return sum(w * m.predict_proba(X, *args) for m, w in zip(self.members_, self.weights_,
                                                                  strict=True))

    def predict(self, X: Any, *args: Any) -> np.ndarray:
        self.check_fitted()
        return np.array(self.labels_.decode(self.predict_proba(X, *args).argmax(axis=1)),
                        dtype=object)

    def class_metrics(self, truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
        return self.members_[0].class_metrics(truth, pred)

    def truth_and_output(self, store: Store, data: Any, y: Any, allow_unseen: bool = False
                         ) -> tuple[np.ndarray, np.ndarray]:
        _, labels, where = keys_and_labels(store, data, y, self.label_col, need_labels=True)
        return self.labels_.encode(labels, where, allow_unseen), self.predict_proba(store, data)

    # -- save and load ------------------------------------------------------------------------
    def saved_config(self) -> dict[str, Any]:
        """The weights and what the members share (each member's parameters are in its own
        document)."""
        self.check_fitted()
        return {"task": self.task, "head": "ensemble",
                "pool": " + ".join(str(m.pool) for m in self.members_),
                "label_col": self.label_col, "seed": self.seed, "unit": self.unit,
                "weights": [round(float(w), 6) for w in self.weights_]}

    def fit_record(self) -> dict[str, Any]:
        return {k: v for k, v in self.fit_info_.items() if k != "members"}

    def fitted_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Member i's arrays under `m{i}.`, its document in `members`."""
        tensors: dict[str, np.ndarray] = {}
        docs = []
        for i, m in enumerate(self.members_):
            arrays, doc = m.artifact()
            tensors.update({f"m{i}.{k}": v for k, v in arrays.items()})
            docs.append(doc)
        return tensors, {"members": docs, "labels": self.labels_.classes}

    @classmethod
    def restore(cls, doc: dict[str, Any], tensors: dict[str, np.ndarray], name: str,
                store: Store | str | Path) -> HeadEnsemble:
        cfg = doc["config"]
        members = []
        for i, mdoc in enumerate(doc["members"]):
            prefix = f"m{i}."
            arrays = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            member = StoreHead.from_artifact(mdoc, arrays, name, store)
            if not isinstance(member, HeadClassifier | PairClassifier):
                raise HeadError(f"head {name}: member {i} is not a classifier (damaged)")
            members.append(member)
        params = [{k: v for k, v in m.get_params().items() if k != "store"} for m in members]
        head = cls(params, list(cfg["weights"]), store=store,
                   label_col=cfg.get("label_col"), unit=cfg.get("unit", "text"),
                   seed=int(cfg.get("seed", 0)))
        head._adopt(members, head._weights())
        if list(head.classes_) != list(doc["labels"]):
            raise HeadError(f"head {name}: its members' classes do not match head.json "
                            "(damaged)")
        head.fit_info_ = {**doc.get("fit", {}), "members": [m.fit_info_ for m in members]}
        head.metrics_ = doc.get("metrics", {})
        return head
