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

from featstore.heads.base import saved_as
from featstore.heads.errors import ParamError
from featstore.heads.estimator import HeadRegressor
from featstore.heads.member_heads import MemberHeads
from featstore.heads.pair_estimator import PairRegressor
from featstore.heads.params import ENSEMBLE_REGRESSOR, ParamSet
from featstore.store import Store


@saved_as("ensemble", "regression")
class EnsembleRegressor(RegressorMixin, MemberHeads):
    """A linear combination of regressors' predictions, each a `HeadRegressor` (with
    `unit="pair"`, a `PairRegressor`) trained on the same rows.

    `members`: the members' parameter dicts; `weights`: one finite weight each (default: equal,
    summing to 1); `intercept`: added to the combination. After `fit`: `members_`, `weights_`.
    """

    params: ClassVar[ParamSet] = ENSEMBLE_REGRESSOR
    task: ClassVar[str] = "regression"

    member_classes = (HeadRegressor, PairRegressor)
    member_what = "a regressor"

    def _weights(self) -> np.ndarray:
        w = super()._weights()
        if self.weights is None:
            w = w / w.sum()
        if w.shape != (len(self.members),) or not np.all(np.isfinite(w)):
            raise ParamError(f"a regression ensemble of {len(self.members)} members needs as "
                             f"many finite {{weights}}, got {self.weights}")
        return w

    def combine(self, outputs: list[np.ndarray]) -> np.ndarray:
        """The ensemble's prediction from its members' predictions, in member order."""
        return float(self.intercept) + sum(w * np.asarray(o, dtype=np.float64)
                                           for w, o in zip(self.weights_, outputs, strict=True))

    def predict(self, X: Any, *args: Any) -> np.ndarray:
        self.check_fitted()
        return self.combine([m.predict(X, *args) for m in self.members_])

    def truth_and_output(self, store: Store, data: Any, y: Any, allow_unseen: bool = False
                         ) -> tuple[np.ndarray, np.ndarray]:
        each = [m.truth_and_output(store, data, y, allow_unseen) for m in self.members_]
        return each[0][0], self.combine([out for _, out in each])

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

    @classmethod
    def restore(cls, doc: dict[str, Any], tensors: dict[str, np.ndarray], name: str,
                store: Store | str | Path) -> EnsembleRegressor:
        cfg = doc["config"]
        members, params = cls.restore_members(doc, tensors, name, store)
        head = cls(params, list(cfg["weights"]), float(cfg.get("intercept", 0.0)), store=store,
                   label_col=cfg.get("label_col"), unit=cfg.get("unit", "text"),
                   seed=int(cfg.get("seed", 0)))
        head.adopt_saved(members, doc)
        return head
