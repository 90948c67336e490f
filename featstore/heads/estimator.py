"""The Python API: `HeadClassifier` and `HeadRegressor`, scikit-learn estimators over the store.

Parameters are declared in `featstore.heads.params` (`TEXT_HEAD`); `__init__` is made from the
declarations and only stores them (scikit-learn's `get_params`, `clone`, the saved config and
`load` all derive from it). `fit` does all the work and leaves learned state in attributes
ending in `_`; `predict`, `predict_proba` and `score` check fittedness first. `X` is a list,
array or Series of raw texts (those the store lacks are featurized on the fly with its
encoder), a DataFrame with a `text` (or `_key`) column, or a dataset name in the store; `store`
is a path or an open store. So `Pipeline`, `cross_val_score`, `GridSearchCV` and `clone` work
on raw texts:

    >>> from featstore.heads import HeadClassifier
    >>> clf = HeadClassifier(store="featstore-store", pool="mean-max", head="mlp")
    >>> clf.fit(["my card is lost", "refund please", ...], ["card", "refund", ...])

Code holding an open store may also pass it first: `clf.fit(store, "banking77")`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from sklearn.base import ClassifierMixin, RegressorMixin

from featstore.heads.base import StoreHead, saved_as
from featstore.heads.errors import HeadError, ParamError, literal
from featstore.heads.inputs import HeadInputs, InputLayout, featurize_for_layouts
from featstore.heads.kinds import TASKS, check_combination, default_head, pooled_while_read
from featstore.heads.labels import LabelMap, check_classes, regression_targets
from featstore.heads.logreg import fit_logreg, logreg_from_state, logreg_state
from featstore.heads.names import text_head_what
from featstore.heads.networks import HeadNetwork, build_network
from featstore.heads.params import TEXT_HEAD, ParamSet
from featstore.heads.rows import Data, keys_and_labels, texts_of
from featstore.heads.splits import holdout
from featstore.heads.training import (
    TrainOptions,
    as_lazy,
    forward_all,
    networks_from_state,
    networks_state,
    pick_threads,
    torch_threads,
    train_network,
)
from featstore.store import FeatstoreError, Store

PREDICT_CHUNK = 65536  # rows normalised and scored at a time by logreg heads


class HeadEstimator(StoreHead):
    """A pooling + fusion + head model trained from stored features; see the subclasses. Its
    parameters are `TEXT_HEAD`'s (featstore.heads.params)."""

    params: ClassVar[ParamSet] = TEXT_HEAD
    kind = "text"

    # -- what the parameters mean -------------------------------------------------------------
    @property
    def head_kind(self) -> str:
        """The head actually used: `head`, or by default logreg for a fixed pooling on a
        classification task and mlp otherwise."""
        if self.head is not None:
            return self.head
        return default_head(self.pool, self.task, self.fuse_mode)

    @property
    def flat(self) -> bool:
        """True when inputs are pooled while read (fixed pooling, or `weighted` under logreg)."""
        return pooled_while_read(self.pool, self.head_kind)

    def check_combination(self) -> None:
        check_combination(self.pool, self.head_kind, self.task, self.fuse_mode)

    def default_name(self) -> str:
        return text_head_what(self.get_params(deep=False), self.task)

    # -- where the data lives ------------------------------------------------------------------
    def _featurize_given_texts(self, store: Store, data: Data, layout: InputLayout | None
                               ) -> None:
        """Raw texts the store lacks are encoded now, with every source the head reads (its
        encoder, a fused encoder, LASER; imported vectors are refused first), or in an empty
        store with the encoder `encoder` names."""
        texts = texts_of(data)
        if not texts:
            return
        if layout is not None:
            featurize_for_layouts(store, texts, [layout])
            return
        try:
            store.featurize_missing(texts, None, ["cls", "mean", "max"], model=self.encoder)
        except FeatstoreError as exc:
            raise HeadError(f"some of the given texts are not featurized, and encoding them "
                            f"with {self.encoder or 'the default encoder'} failed: {exc}"
                            ) from None

    def _layout(self, store: Store) -> InputLayout:
        return InputLayout.resolve(store, self.pool, self.of, self.layers, self.layer_start,
                                   self.fuse, self.encoder)

    def check_inputs(self, store: Store, data: Data, where: str) -> None:
        """Fail fast, before any training, if these parameters or the store cannot serve
        `data`'s rows; sets nothing."""
        self.validate_params()
        keys, _, _ = keys_and_labels(store, data, None, self.label_col, need_labels=False)
        self._layout(store).check(store, keys, where)

    # -- fit ----------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, *args: Any, valid: Data | None = None,
            valid_y: Any = None, progress: object | None = None) -> HeadEstimator:
        """Fit on `X` (and labels `y`, else the label column); early stopping uses `valid` if
        given, else a held-out part of the training rows."""
        store, data, y = self.store_data_y(X, y, args)
        self.validate_params()
        start = time.perf_counter()
        keys, labels, where = keys_and_labels(store, data, y, self.label_col, need_labels=True)
        if not store.has_encoder():
            self._featurize_given_texts(store, data, None)
        layout = self._layout(store)
        self._featurize_given_texts(store, data, layout)
        inputs = HeadInputs(layout, self.pool, self.flat,
                            self.flat and self.fuse_mode == "concat", self.normalize)
        targets = self._fit_targets(labels, where)
        x = inputs.fit_transform(store, keys, where)
        self.inputs_ = inputs
        self.head_kind_ = self.head_kind
        info: dict[str, Any] = {"rows": len(keys)}
        self.networks_: list[HeadNetwork] = []
        if self.head_kind_ == "logreg":
            self.model_, fitted = fit_logreg(as_lazy(x).matrix(), targets, self.C,
                                             self.max_iter, self.seed)
            info.update(fitted)
        else:
            val = self._validation(store, valid, valid_y)
            info.update(self._train_networks(x, targets, val, progress))
        info["train_seconds"] = round(time.perf_counter() - start, 3)
        self.fit_info_ = info
        return self

    def _fit_targets(self, labels: pd.Series, where: str) -> np.ndarray:
        """Targets of the training rows; learns the label map (or target scale)."""
        if self.task == "regression":
            t = regression_targets(labels, self.label_col or "label", where)
            self.target_mean_ = float(np.mean(t))
            self.target_std_ = float(np.std(t)) or 1.0
            return t
        self.labels_ = LabelMap.fit(labels)
        self.classes_ = np.array(self.labels_.classes, dtype=object)
        y = self.labels_.encode(labels, where)
        check_classes(self.labels_, where)
        return y

    def _targets(self, labels: pd.Series, where: str, allow_unseen: bool = False
                 ) -> np.ndarray:
        """Targets of other rows, under what fit learned."""
        if self.task == "regression":
            return regression_targets(labels, self.label_col or "label", where)
        return self.labels_.encode(labels, where, allow_unseen)

    def _torch_targets(self, targets: np.ndarray) -> torch.Tensor:
        if self.task == "regression":
            return torch.tensor((targets - self.target_mean_) / self.target_std_,
                                dtype=torch.float32)
        return torch.from_numpy(targets)

    def _validation(self, store: Store, valid: Data | None, valid_y: Any) -> tuple | None:
        if valid is None:
            return None
        vkeys, vlabels, vwhere = keys_and_labels(store, valid, valid_y, self.label_col,
                                                 need_labels=True)
        vy = self._torch_targets(self._targets(vlabels, vwhere))
        return self.inputs_.transform(store, vkeys, vwhere), vy

    def _network(self) -> HeadNetwork:
        out_dim = 1 if self.task == "regression" else len(self.labels_.classes)
        return build_network(self.pool, self.flat, self.inputs_.dims, self.fuse_mode,
                             self.proj_dim, self.head_kind_, out_dim, self.hidden, self.dropout)

    def _train_networks(self, x: Any, targets: np.ndarray, val: tuple | None,
                        progress: object | None) -> dict[str, Any]:
        """Train `seeds` networks, seeds `seed`, `seed + 1`, ...; early stopping on `val`,
        else on a held-out part of the training rows (`valid_fraction`), else none. Returns
        what training did."""
        y = self._torch_targets(targets)
        train_x, train_y = x, y
        if val is None and self.valid_fraction > 0 and len(targets) >= 10:
            fit_idx, held = holdout(None if self.task == "regression" else targets,
                                    len(targets), self.valid_fraction, self.seed)
            val = (x.subset(held), y[held]) if len(held) else None
            train_x, train_y = x.subset(fit_idx), y[fit_idx]
        width = train_x.width
        best, ran = [], []
        for member in range(self.seeds):
            seed = self.seed + member
            torch.manual_seed(seed)
            net = self._network()
            opts = TrainOptions(epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay,
                                batch_size=self.batch_size, patience=self.patience,
                                label_smoothing=self.label_smoothing if self.task ==
                                "classification" else 0.0, seed=seed)
            with torch_threads(pick_threads(len(train_x) * width)):
                result = train_network(net, self.task, train_x, train_y, val, opts, progress)
            net.eval()
            self.networks_.append(net)
            best.append(result.best_epoch)
            ran.append(result.epochs_run)
        return {"best_epoch": best[0] if len(best) == 1 else best,
                "epochs_run": ran[0] if len(ran) == 1 else ran}

    # -- fitted state ------------------------------------------------------------------------
    @property
    def network_(self) -> HeadNetwork:
        """The (first) trained network; `networks_` holds every ensemble member."""
        self.check_fitted()
        return self.networks_[0]

    @property
    def encoder_id_(self) -> str:
        """The encoder's id in the store the head was fitted (or saved) in."""
        self.check_fitted()
        return self.inputs_.layout.encoder_id

    @property
    def layers_(self) -> list[int]:
        self.check_fitted()
        return self.inputs_.layout.layers

    @property
    def layer_weights_(self) -> np.ndarray:
        """How `pool="weighted"` mixes `layers_`: numpy float64 [len(layers_)], summing to 1,
        averaged over the seeds' networks (logistic regression takes the plain average)."""
        self.check_fitted()
        if self.pool != "weighted":
            raise HeadError(f"pool={self.pool!r} learns no layer weights; pool='weighted' does")
        if not self.networks_:
            return np.full(len(self.layers_), 1 / len(self.layers_))
        return np.mean([net.pooling.layer_weights() for net in self.networks_], axis=0)

    @property
    def layouts_(self) -> list[InputLayout]:
        """What the head reads from a store (one layout; an ensemble has one per member)."""
        self.check_fitted()
        return [self.inputs_.layout]

    # -- predict ------------------------------------------------------------------------------
    def _output(self, store: Store, data: Data) -> np.ndarray:
        """Class probabilities [n, classes], or regression predictions [n]."""
        self.check_fitted()
        keys, _, where = keys_and_labels(store, data, None, self.label_col, need_labels=False)
        self._featurize_given_texts(store, data, self.inputs_.layout.bind(store))
        x = self.inputs_.transform(store, keys, where)
        if self.head_kind_ == "logreg":
            lazy, step = as_lazy(x), PREDICT_CHUNK
            return np.concatenate([self.model_.predict_proba(lazy.matrix(slice(i, i + step)))
                                   for i in range(0, len(lazy), step)])
        with torch.inference_mode(), torch_threads(pick_threads(len(x) * x.width)):
            outs = [forward_all(net, x).double() for net in self.networks_]
        # several seeds average the networks' probabilities (or predictions, for regression)
        if self.task == "regression":
            out = torch.stack([o[:, 0] for o in outs]).mean(0)
            return out.numpy() * self.target_std_ + self.target_mean_
        return torch.stack([torch.softmax(o, dim=1) for o in outs]).mean(0).numpy()

    def truth_and_output(self, store: Store, data: Any, y: Any, allow_unseen: bool = False
                         ) -> tuple[np.ndarray, np.ndarray]:
        _, labels, where = keys_and_labels(store, data, y, self.label_col, need_labels=True)
        return self._targets(labels, where, allow_unseen), self._output(store, data)

    # -- save and load ------------------------------------------------------------------------
    def saved_config(self) -> dict[str, Any]:
        """The parameters as JSON (the head resolved), plus the task."""
        return {**super().saved_config(), "head": self.head_kind_}

    def fitted_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Normaliser statistics, logistic regression or network weights (`net.`, then
        `net1.`, ... for further seeds); the layout read, input widths and label map."""
        tensors = self.inputs_.state()
        if self.head_kind_ == "logreg":
            tensors.update(logreg_state(self.model_))
        tensors.update(networks_state(self.networks_))
        doc: dict[str, Any] = {**self.inputs_.layout.to_json(), "input_dims": self.inputs_.dims}
        if self.task == "classification":
            doc["labels"] = self.labels_.classes
        else:
            doc["target"] = {"mean": self.target_mean_, "std": self.target_std_}
        return tensors, doc

    @classmethod
    def restore(cls, doc: dict[str, Any], tensors: dict[str, np.ndarray], name: str,
                store: Store | str | Path) -> HeadEstimator:
        head = cls.from_config(doc["config"])
        head.store = store  # predict(texts) reads the store it was loaded from
        head.inputs_ = HeadInputs(InputLayout.from_json(doc), head.pool, head.flat,
                                  head.flat and head.fuse_mode == "concat",
                                  head.normalize).load_state(doc["input_dims"], tensors)
        head.head_kind_ = head.head_kind
        head.metrics_ = doc.get("metrics", {})
        if head.task == "classification":
            head.labels_ = LabelMap(list(doc["labels"]))
            head.classes_ = np.array(head.labels_.classes, dtype=object)
        else:
            head.target_mean_ = float(doc["target"]["mean"])
            head.target_std_ = float(doc["target"]["std"])
        head.networks_ = []
        fit_info = doc.get("fit", {})
        if head.head_kind_ == "logreg":
            head.model_ = logreg_from_state(tensors, float(fit_info.get("C", 1.0)))
        head.networks_.extend(networks_from_state(
            tensors, head.seeds if head.head_kind_ != "logreg" else 0, head._network, name))
        head.fit_info_ = fit_info
        return head


@saved_as("text", "classification")
class HeadClassifier(ClassifierMixin, HeadEstimator):
    """A pooling + fusion + head classifier trained from stored features."""

    task = "classification"

    def predict_proba(self, X: Any, *args: Any) -> np.ndarray:
        """[n, n_classes] probabilities; column i is `classes_[i]`."""
        self.check_fitted()
        store, data = self.store_data(X, args)
        return self._output(store, data)

    def predict(self, X: Any, *args: Any) -> np.ndarray:
        self.check_fitted()
        return np.array(self.labels_.decode(self.predict_proba(X, *args).argmax(axis=1)),
                        dtype=object)


@saved_as("text", "regression")
class HeadRegressor(RegressorMixin, HeadEstimator):
    """A pooling + fusion + head regressor (MSE loss) trained from stored features; its head is
    an MLP unless `head` says otherwise."""

    task = "regression"

    def predict(self, X: Any, *args: Any) -> np.ndarray:
        self.check_fitted()
        store, data = self.store_data(X, args)
        return self._output(store, data)


def make_head(task: str = "classification", **params: Any) -> HeadEstimator:
    """A classifier or regressor by task name."""
    if task not in TASKS:
        raise ParamError(f"unknown {{task}} {literal(repr(task))}; choose classification or "
                         "regression")
    return (HeadRegressor if task == "regression" else HeadClassifier)(**params)
