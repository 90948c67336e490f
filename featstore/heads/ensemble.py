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
from featstore.heads.member_heads import MemberHeads
from featstore.heads.pair_estimator import PairClassifier
from featstore.heads.params import HEAD_ENSEMBLE, ParamSet
from featstore.heads.rows import keys_and_labels
from featstore.store import Store


@saved_as("ensemble")
class HeadEnsemble(ClassifierMixin, MemberHeads):
    """A weighted average of classifiers' probabilities, each a `HeadClassifier` (with
    `unit="pair"`, a `PairClassifier`) trained on the same rows.

    `members`: the members' parameter dicts (anything the member class takes); `weights`: one
    positive weight each (default equal). After `fit`: `members_`, `weights_` (summing to 1),
    `classes_`. `predict_proba` averages the members' probabilities; `save`/`load` keep every
    member.
    """

    params: ClassVar[ParamSet] = HEAD_ENSEMBLE

    member_classes = (HeadClassifier, PairClassifier)
    member_what = "a classifier"

    def _weights(self) -> np.ndarray:
        w = super()._weights()
        if w.shape != (len(self.members),) or not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise ParamError(f"an ensemble of {len(self.members)} members needs as many "
                             f"positive {{weights}}, got {self.weights}")
        return w / w.sum()

    def _adopt(self, members: list[StoreHead], weights: np.ndarray) -> None:
        classes = [list(m.classes_) for m in members]
        if any(c != classes[0] for c in classes):
            raise HeadError("ensemble members disagree on the classes; fit them on the same rows")
        super()._adopt(members, weights)
        self.labels_ = members[0].labels_
        self.classes_ = members[0].classes_

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

    def fitted_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The members' (`MemberHeads.fitted_state`) and the classes."""
        tensors, extra = super().fitted_state()
        return tensors, {**extra, "labels": self.labels_.classes}

    @classmethod
    def restore(cls, doc: dict[str, Any], tensors: dict[str, np.ndarray], name: str,
                store: Store | str | Path) -> HeadEnsemble:
        cfg = doc["config"]
        members, params = cls.restore_members(doc, tensors, name, store)
        head = cls(params, list(cfg["weights"]), store=store,
                   label_col=cfg.get("label_col"), unit=cfg.get("unit", "text"),
                   seed=int(cfg.get("seed", 0)))
        head.adopt_saved(members, doc)
        if list(head.classes_) != list(doc["labels"]):
            raise HeadError(f"head {name}: its members' classes do not match head.json "
                            "(damaged)")
        return head
