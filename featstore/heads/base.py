"""What every estimator over the store shares, written once.

`StoreEstimator`: parameters declared in `featstore.heads.params` (its `__init__` is made from
them and only stores them; `validate_params` checks them), the call forms (`fit(texts, y)` with
the `store` parameter, or `fit(store, data, y)` with an open store first), and fittedness
(`fit_info_` is set last by `fit` and by `load`; `__sklearn_is_fitted__`).

`StoreHead` adds what a saved head is: `evaluate` and `score` (accuracy, or R squared), and
save/load through the parameters (`get_params` -> head.json `config` -> `cls(**config)`).
`load` on any class reads whichever kind of head was saved (`load_head` is `StoreHead.load`),
and refuses one that is not of the class asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from featstore.heads.artifacts import restore_head, write_head
from featstore.heads.errors import HeadError, ParamError
from featstore.heads.metrics import scores
from featstore.heads.params import ParamSet, declared_init
from featstore.heads.rows import store_and_data
from featstore.store import Store

# what head.json's `kind` says, as messages name it; per-text heads are saved without one
KIND_NAMES = {"text": "a per-text head", "sequence": "a sequence head",
              "pair": "a pair head", "ensemble": "an ensemble of heads"}
_SAVED_CLASSES: dict[tuple[str, str], type[StoreHead]] = {}
Head = TypeVar("Head", bound="StoreHead")


class HeadNotFittedError(HeadError, NotFittedError):
    """Predicting before fitting: a featstore error (one line) that scikit-learn recognises."""


class StoreEstimator(BaseEstimator):
    """Declared parameters, the store call forms and fittedness; see the module docstring."""

    params: ClassVar[ParamSet]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "params" in cls.__dict__:
            cls.__init__ = declared_init(cls.params, cls.__name__)  # type: ignore[method-assign]

    # -- parameters ---------------------------------------------------------------------------
    def validate_params(self) -> None:
        """One-line errors (ParamError) for parameters that cannot work, before any data is
        read: each against its declaration, then the combinations `check_combination`
        refuses."""
        self.params.validate(self.get_params(deep=False))
        self.check_combination()

    def check_combination(self) -> None:
        """Combinations of valid values that still cannot work; none by default."""

    # -- where the data lives -----------------------------------------------------------------
    def store_data_y(self, X: Any, y: Any, args: tuple) -> tuple[Store, Any, Any]:
        """(store, data, labels) of a call made as `f(data, y)` or `f(store, data, y)`."""
        store, data, rest = store_and_data(X, (y, *args), self.store)
        return store, data, rest[0] if rest else None

    def store_data(self, X: Any, args: tuple) -> tuple[Store, Any]:
        """(store, data) of a call made as `f(data)` or `f(store, data)`."""
        store, data, _ = store_and_data(X, args, self.store)
        return store, data

    # -- fitted state -------------------------------------------------------------------------
    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "fit_info_")

    def check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise HeadNotFittedError(f"this {type(self).__name__} is not fitted yet; call fit "
                                     "first")


def saved_as(kind: str, task: str = "classification"):  # noqa: ANN201  a class decorator
    """Register a head class as what `load` builds for head.json's `kind` and task."""
    def register(cls: type[Head]) -> type[Head]:
        cls.kind = kind
        _SAVED_CLASSES.setdefault((kind, task), cls)
        return cls
    return register


class StoreHead(StoreEstimator):
    """A head: scored, saved and loaded the same way whatever its kind."""

    task: ClassVar[str] = "classification"
    kind: ClassVar[str | None] = None  # head.json's kind; set by `saved_as`

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # scikit-learn's mixins come first in a head's bases (as its checks ask) and bring a
        # score without the store call form: this one is kept
        if "score" not in cls.__dict__:
            cls.score = StoreHead.score  # type: ignore[method-assign]

    # -- scores -------------------------------------------------------------------------------
    def truth_and_output(self, store: Store, data: Any, y: Any, allow_unseen: bool = False
                         ) -> tuple[np.ndarray, np.ndarray]:
        """(true targets: class indices or numbers, output: probabilities or predictions); a
        label the classes lack is refused, or with `allow_unseen` coded negative (an error)."""
        raise NotImplementedError

    def evaluate(self, X: Any, y: Any = None, *args: Any, allow_unseen_labels: bool = False
                 ) -> dict[str, float]:
        """The task's metrics on labelled rows; with `allow_unseen_labels`, rows whose label
        the training data never showed count as errors instead of being refused."""
        self.check_fitted()
        store, data, y = self.store_data_y(X, y, args)
        truth, out = self.truth_and_output(store, data, y, allow_unseen_labels)
        if self.task == "regression":
            return scores(self.task, truth, out)
        pred = out.argmax(axis=1)
        return {**scores(self.task, truth, pred), **self.class_metrics(truth, pred)}

    def class_metrics(self, truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
        """What this kind reports besides accuracy and macro-F1 (pair heads: the positive
        class's F1 of a two-class task); none by default."""
        return {}

    def score(self, X: Any, y: Any = None, *args: Any, sample_weight: Any = None,
              allow_unseen_labels: bool = False) -> float:
        """Accuracy for classifiers, R squared for regressors, as scikit-learn scores."""
        if sample_weight is not None:
            raise ParamError("score takes no {sample_weight}")
        if self.task != "regression":
            return self.evaluate(X, y, *args, allow_unseen_labels=allow_unseen_labels
                                 )["accuracy"]
        self.check_fitted()
        store, data, y = self.store_data_y(X, y, args)
        truth, pred = self.truth_and_output(store, data, y)
        return float(1 - np.sum((truth - pred) ** 2) / np.sum((truth - truth.mean()) ** 2))

    def default_name(self) -> str:
        """What a saved head of these parameters is called after its dataset's name."""
        raise NotImplementedError

    def protocol_notes(self, plan: Any, refitted: bool, first: StoreHead) -> list[str]:
        """What a protocol run of this estimator says besides its scores (`first`: the first
        run's estimator)."""
        if not refitted:
            return []
        return [f"metrics are the mean over {plan.cv} folds; the saved head is refitted on "
                f"{plan.unit.refit_on}"]

    def check_inputs(self, store: Store, data: Any, where: str) -> None:
        """Fail fast, before any training, if the parameters or the store cannot serve
        `data`; sets nothing."""
        self.validate_params()

    # -- save ---------------------------------------------------------------------------------
    def saved_config(self) -> dict[str, Any]:
        """The parameters as JSON, plus the task."""
        return {**self.params.to_config(self.get_params(deep=False)), "task": self.task}

    def fit_record(self) -> dict[str, Any]:
        """What head.json keeps of `fit_info_`."""
        return self.fit_info_

    def fitted_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(named arrays, the head.json fields only this kind has)."""
        raise NotImplementedError

    def artifact(self, metrics: dict | None = None, extra: dict | None = None
                 ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(named arrays, document): what `save` writes."""
        self.check_fitted()
        tensors, fields = self.fitted_state()
        doc: dict[str, Any] = {"config": self.saved_config(), "fit": self.fit_record(),
                               "metrics": metrics or {}, **fields}
        if self.kind != "text":
            doc["kind"] = self.kind
        doc.update(extra or {})
        return tensors, doc

    def save(self, store: Store | str | Path, name: str, metrics: dict | None = None,
             extra: dict | None = None, overwrite: bool = False) -> Path:
        """Write this head to STORE/heads/NAME (safetensors + JSON); `load` reads it back. A head
        already saved under NAME is replaced only with `overwrite`."""
        tensors, doc = self.artifact(metrics, extra)
        return write_head(store, name, tensors, doc, overwrite=overwrite)

    # -- load ---------------------------------------------------------------------------------
    @classmethod
    def load(cls: type[Head], store: Store | str | Path, name: str) -> Head:
        """The head saved as STORE/heads/NAME, predicting what it did when saved."""
        return restore_head(store, name,
                            lambda doc, tensors: cls.from_artifact(doc, tensors, name, store))

    @classmethod
    def from_artifact(cls: type[Head], doc: dict[str, Any], tensors: dict[str, np.ndarray],
                      name: str, store: Store | str | Path) -> Head:
        """The head a document and its arrays describe, reading from `store`; refused when it
        is not one of this class."""
        kind = doc.get("kind", "text")
        task = doc.get("config", {}).get("task", "classification")
        saved = _SAVED_CLASSES.get((kind, task))
        if saved is None:
            raise HeadError(f"head {name}: head.json names an unknown kind {kind!r} (damaged, or "
                            "saved by a newer featstore)")
        klass = cls if issubclass(cls, saved) else saved
        if not issubclass(klass, cls):
            if cls.kind is not None and kind != cls.kind:
                raise HeadError(f"head {name} is {KIND_NAMES.get(kind, kind)}; load it with "
                                "featstore.heads.load_head")
            raise HeadError(f"head {name} is a {klass.__name__}, not a {cls.__name__}")
        return klass.restore(doc, tensors, name, store)

    @classmethod
    def from_config(cls: type[Head], config: dict[str, Any]) -> Head:
        """An unfitted estimator with a saved config's parameters: `cls(**config)`."""
        return cls(**cls.params.from_config(config))

    @classmethod
    def restore(cls: type[Head], doc: dict[str, Any], tensors: dict[str, np.ndarray],
                name: str, store: Store | str | Path) -> Head:
        """This kind's fitted state back from its document and arrays."""
        raise NotImplementedError
