"""`EnsembleRegressor`: regressors of different poolings or heads, their predictions combined
linearly (stacking, Wolpert 1992): `intercept + sum(w_i * prediction_i)`, the weights fitted by
`fit-head --auto` on the members' out-of-fold predictions of the training rows
(`featstore.selection.ensemble_selection.stack_regressors`). A weight may be negative: on
STS-B the plain cosine enters with a negative weight beside heads that learned more from it.

Saved as one head like `HeadEnsemble`: member i's arrays under `m{i}.` in one safetensors
file, each member's document under `members` in head.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import RegressorMixin

from featstore.heads.base import StoreHead, saved_as
from featstore.heads.errors import HeadError, ParamError
from featstore.heads.estimator import HeadRegressor
from featstore.heads.inputs import InputLayout
from featstore.heads.pair_estimator import PairRegressor
from featstore.heads.params import ENSEMBLE_REGRESSOR, ParamSet
from featstore.heads.rows import Data
from featstore.store import Store


@saved_as("ensemble", "regression")
class EnsembleRegressor(RegressorMixin, StoreHead):
    """A linear combination of regressors' predictions, each a `HeadRegressor` (with
    `unit="pair"`, a `PairRegressor`) trained on the same rows.

    `members`: the members' parameter dicts; `weights`: one finite weight each (default: equal,
    summing to 1); `intercept`: added to the combination. After `fit`: `members_`, `weights_`.
    """

    params: ClassVar[ParamSet] = ENSEMBLE_REGRESSOR
    task: ClassVar[str] = "regression"

    def check_combination(self) -> None:
        self._weights()

    def _weights(self) -> np.ndarray:
        if not self.members or not all(isinstance(m, dict) for m in self.members):
            raise ParamError("an ensemble needs a list of member parameter dicts ({members})")
        w = np.full(len(self.members), 1.0 / len(self.members)) if self.weights is None else \
            np.asarray(self.weights, dtype=np.float64)
        if w.shape != (len(self.members),) or not np.all(np.isfinite(w)):
            raise ParamError(f"a regression ensemble of {len(self.members)} members needs as "
                             f"many finite {{weights}}, got {self.weights}")
        return w

    def fit(self, X: Any, y: Any = None, *args: Any, valid: Data | None = None,
            progress: object | None = None) -> EnsembleRegressor:
        """Fit every member on the same rows (`valid` drives their early stopping)."""
        store, data, y = self.store_data_y(X, y, args)
        self.validate_params()
        weights = self._weights()
        member = PairRegressor if self.unit == "pair" else HeadRegressor
        members = [member(**{"seed": self.seed, **params, "label_col": self.label_col,
                             "store": self.store}).fit(store, data, y, valid=valid,
                                                       progress=progress)
                   for params in self.members]
        self._adopt(members, weights)
        return self

    def _adopt(self, members: list[StoreHead], weights: np.ndarray) -> None:
        self.members_ = members
        self.weights_ = weights
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

    def combine(self, outputs: list[np.ndarray]) -> np.ndarray:
        """The ensemble's prediction from its members' predictions, in member order."""
        return float(self.intercept) + sum(w * np.asarray(o, dtype=np.float64)
                                           for w, o in zip(self.weights_, outputs, strict=True))

    def predict(self, X: Any, *args: Any) -> np.ndarray:
        self.check_fitted()
        return self.combine([m.predict(X, *args) for m in self.members_])

    def truth_and_output(self, store: Store, data: Any, y: Any, allow_unseen: bool = False
                         ) -> tuple[np.ndarray, np.ndarray]:
        pairs = [m.truth_and_output(store, data, y, allow_unseen) for m in self.members_]
        return pairs[0][0], self.combine([out for _, out in pairs])

    # -- save and load ------------------------------------------------------------------------
    def saved_config(self) -> dict[str, Any]:
        """The weights, the intercept and what the members share (each member's parameters
        are in its own document)."""
        self.check_fitted()
        return {"task": self.task, "head": "ensemble",
                "pool": " + ".join(str(m.pool) for m in self.members_),
                "label_col": self.label_col, "seed": self.seed, "unit": self.unit,
                "weights": [float(w) for w in self.weights_],
                "intercept": float(self.intercept)}

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
        return tensors, {"members": docs}

    @classmethod
    def restore(cls, doc: dict[str, Any], tensors: dict[str, np.ndarray], name: str,
                store: Store | str | Path) -> EnsembleRegressor:
        cfg = doc["config"]
        members = []
        for i, mdoc in enumerate(doc["members"]):
            prefix = f"m{i}."
            arrays = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            member = StoreHead.from_artifact(mdoc, arrays, name, store)
            if not isinstance(member, HeadRegressor | PairRegressor):
                raise HeadError(f"head {name}: member {i} is not a regressor (damaged)")
            members.append(member)
        params = [{k: v for k, v in m.get_params().items() if k != "store"} for m in members]
        head = cls(params, list(cfg["weights"]), float(cfg.get("intercept", 0.0)), store=store,
                   label_col=cfg.get("label_col"), unit=cfg.get("unit", "text"),
                   seed=int(cfg.get("seed", 0)))
        head._adopt(members, head._weights())
        head.fit_info_ = {**doc.get("fit", {}), "members": [m.fit_info_ for m in members]}
        head.metrics_ = doc.get("metrics", {})
        return head
