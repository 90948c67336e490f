"""`MemberHeads`: what a head made of member heads (a classifier ensemble, a regression stack)
does the same way whatever combines the members: keep them with their weights, read through
them, save each under `m{i}.` with its own document, and load them back."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from featstore.heads.base import StoreHead
from featstore.heads.errors import HeadError, ParamError
from featstore.heads.inputs import InputLayout
from featstore.heads.rows import Data
from featstore.store import Store


class MemberHeads(StoreHead):
    """The shared half of `HeadEnsemble` and `EnsembleRegressor`; the subclass combines and
    says which weights it accepts (`_weights`)."""

    # the members' classes: per text, per pair; and what they are, for messages
    member_classes: ClassVar[tuple[type[StoreHead], type[StoreHead]]]
    member_what: ClassVar[str]

    def check_combination(self) -> None:
        self._weights()

    def _weights(self) -> np.ndarray:
        """The weights as fitted (the subclass checks their values)."""
        if not self.members or not all(isinstance(m, dict) for m in self.members):
            raise ParamError("an ensemble needs a list of member parameter dicts ({members})")
        return np.ones(len(self.members)) if self.weights is None else \
            np.asarray(self.weights, dtype=np.float64)

    def fit(self, X: Any, y: Any = None, *args: Any, valid: Data | None = None,
            progress: object | None = None) -> MemberHeads:
        """Fit every member on the same rows (`valid` drives their early stopping)."""
        store, data, y = self.store_data_y(X, y, args)
        self.validate_params()
        weights = self._weights()
        member = self.member_classes[1] if self.unit == "pair" else self.member_classes[0]
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
    def restore_members(cls, doc: dict[str, Any], tensors: dict[str, np.ndarray], name: str,
                        store: Store | str | Path
                        ) -> tuple[list[StoreHead], list[dict[str, Any]]]:
        """The saved members (each of `member_classes`, else the head is damaged) and their
        parameters."""
        members = []
        for i, mdoc in enumerate(doc["members"]):
            prefix = f"m{i}."
            arrays = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            member = StoreHead.from_artifact(mdoc, arrays, name, store)
            if not isinstance(member, cls.member_classes):
                raise HeadError(f"head {name}: member {i} is not {cls.member_what} (damaged)")
            members.append(member)
        params = [{k: v for k, v in m.get_params().items() if k != "store"} for m in members]
        return members, params

    def adopt_saved(self, members: list[StoreHead], doc: dict[str, Any]) -> None:
        """Take loaded members with the fit record and metrics head.json kept."""
        self._adopt(members, self._weights())
        self.fit_info_ = {**doc.get("fit", {}), "members": [m.fit_info_ for m in members]}
        self.metrics_ = doc.get("metrics", {})
