"""The Python API: `HeadClassifier` and `HeadRegressor`, scikit-learn estimators over the store.

Parameters go to `__init__` and are only stored there: its signature is the one parameter list
(scikit-learn's `get_params`, `clone`, the saved config and `load` all derive from it). `fit`
does all the work and leaves learned state in attributes ending in `_`; `predict`,
`predict_proba` and `score` check fittedness first. `X` is a list, array or Series of raw texts
(those the store lacks are featurized on the fly with its encoder), a DataFrame with a `text`
(or `_key`) column, or a dataset name in the store; `store` is a path or an open store. So
`Pipeline`, `cross_val_score`, `GridSearchCV` and `clone` work on raw texts:

    >>> from featstore.heads import HeadClassifier
    >>> clf = HeadClassifier(store="featstore-store", pool="mean-max", head="mlp")
    >>> clf.fit(["my card is lost", "refund please", ...], ["card", "refund", ...])

Code holding an open store may also pass it first: `clf.fit(store, "banking77")`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import NotFittedError

from featstore.heads.artifacts import restore_head, write_head
from featstore.heads.choices import FUSE_MODES, TASKS
from featstore.heads.errors import HeadError
from featstore.heads.inputs import HeadInputs, InputLayout
from featstore.heads.labels import LabelMap, check_classes, regression_targets
from featstore.heads.logreg import fit_logreg, logreg_from_state, logreg_state
from featstore.heads.metrics import scores
from featstore.heads.networks import HeadNetwork, build_network, check_head
from featstore.heads.normalizer import check_normalization
from featstore.heads.poolings import check_pooling, is_trainable
from featstore.heads.rows import Data, keys_and_labels, store_and_data, texts_of
from featstore.heads.splits import holdout
from featstore.heads.training import (
    LazyInputs,
    TrainOptions,
    forward_all,
    pick_threads,
    torch_threads,
    train_network,
)
from featstore.store import FeatstoreError, Store

PREDICT_CHUNK = 65536  # rows normalised and scored at a time by logreg heads


class HeadNotFittedError(HeadError, NotFittedError):
    """Predicting before fitting: a featstore error (one line) that scikit-learn recognises."""


class HeadEstimator(BaseEstimator):
    """A pooling + fusion + head model trained from stored features; see the subclasses."""

    task = "classification"

    def __init__(
        self,
        pool: str = "mean",
        head: str | None = None,
        *,
        store: str | Path | Store | None = None,
        layers: Sequence[int] | None = None,
        layer_start: int | None = None,
        of: str | None = None,
        fuse: Sequence[str] = (),
        fuse_mode: str = "concat",
        normalize: str = "standard",
        hidden: int = 512,
        dropout: float = 0.5,
        epochs: int = 40,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        batch_size: int = 256,
        patience: int = 8,
        label_smoothing: float = 0.1,
        C: float | None = None,  # noqa: N803  scikit-learn's name for it
        max_iter: int = 100,
        proj_dim: int = 256,
        valid_fraction: float = 0.1,
        encoder: str | None = None,
        label_col: str | None = None,
        seed: int = 0,
        ensemble: int = 1,
    ) -> None:
        self.pool = pool
        self.head = head
        self.store = store
        self.layers = layers
        self.layer_start = layer_start
        self.of = of
        self.fuse = fuse
        self.fuse_mode = fuse_mode
        self.normalize = normalize
        self.hidden = hidden
        self.dropout = dropout
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.patience = patience
        self.label_smoothing = label_smoothing
        self.C = C
        self.max_iter = max_iter
        self.proj_dim = proj_dim
        self.valid_fraction = valid_fraction
        self.encoder = encoder
        self.label_col = label_col
        self.seed = seed
        self.ensemble = ensemble

    # -- what the parameters mean -------------------------------------------------------------
    @property
    def head_kind(self) -> str:
        """The head actually used: `head`, or by default logreg for a fixed pooling on a
        classification task and mlp otherwise."""
        if self.head is not None:
            return self.head
        simple = not is_trainable(self.pool) and self.fuse_mode == "concat"
        return "logreg" if self.task == "classification" and simple else "mlp"

    @property
    def flat(self) -> bool:
        """True when inputs are pooled while read (fixed pooling, or `weighted` under logreg)."""
        return not is_trainable(self.pool) or (self.pool == "weighted" and
                                                self.head_kind == "logreg")

    def validate_params(self) -> None:
        """One-line errors for parameters that cannot work, before any data is read."""
        check_pooling(self.pool, self.of)
        check_head(self.head_kind)
        check_normalization(self.normalize)
        if self.fuse_mode not in FUSE_MODES:
            raise HeadError(f"unknown --fuse-mode {self.fuse_mode!r}; choose one of: "
                            f"{', '.join(FUSE_MODES)}")
        if self.head_kind == "logreg":
            if self.task == "regression":
                raise HeadError("--head logreg is a classifier; use --head linear or mlp for "
                                "--task regression")
            if self.pool in ("lstm", "attention"):
                raise HeadError(f"--pool {self.pool} is trained with the head; use --head linear "
                                "or mlp (logreg takes fixed poolings only)")
            if self.fuse_mode == "project":
                raise HeadError("--fuse-mode project is trained with the head; use --head linear "
                                "or mlp")
        for name, value, low in (("hidden", self.hidden, 1), ("epochs", self.epochs, 1),
                                 ("batch_size", self.batch_size, 1),
                                 ("proj_dim", self.proj_dim, 1),
                                 ("ensemble", self.ensemble, 1)):
            if int(value) < low:
                raise HeadError(f"--{name.replace('_', '-')} must be at least {low}, got {value}")
        for name, value in (("dropout", self.dropout), ("valid_fraction", self.valid_fraction),
                            ("label_smoothing", self.label_smoothing)):
            if not 0 <= value < 1:
                raise HeadError(f"--{name.replace('_', '-')} must be at least 0 and below 1, "
                                f"got {value}")
        if not self.lr > 0:
            raise HeadError(f"--lr must be positive, got {self.lr}")
        if not self.weight_decay >= 0:
            raise HeadError(f"weight_decay must be 0 or more, got {self.weight_decay}")
        if self.C is not None and self.C <= 0:
            raise HeadError(f"--C must be positive, got {self.C}")

    # -- where the data lives ------------------------------------------------------------------
    def _split(self, X: Any, rest: tuple) -> tuple[Store, Any, tuple]:
        return store_and_data(X, rest, self.store)

    def _featurize_given_texts(self, store: Store, data: Data, layout: InputLayout | None
                               ) -> None:
        """Raw texts the store lacks are encoded now, with the store's (or the head's) encoder."""
        texts = texts_of(data)
        if not texts:
            return
        if layout is not None:
            stored = store.encoder_entry(layout.encoder_id).feature_shapes
            if not set(layout.features) <= set(stored):
                return  # a kind of feature never stored: the layout check says which flag
        try:
            if layout is None:
                store.featurize_missing(texts, None, ["cls", "mean", "max"], model=self.encoder)
            else:
                store.featurize_missing(texts, layout.encoder_fingerprint, layout.features)
        except FeatstoreError as exc:
            model = layout.encoder_fingerprint.get("model") if layout else self.encoder
            raise HeadError(f"some of the given texts are not featurized, and encoding them "
                            f"with {model or 'the default encoder'} failed: {exc}") from None

    def _layout(self, store: Store) -> InputLayout:
        return InputLayout.resolve(store, self.pool, self.of, self.layers, self.layer_start,
                                   self.fuse, self.encoder)

    def check_inputs(self, store: Store, keys: list[str], where: str) -> None:
        """Fail fast, before any training, if these parameters or the store cannot serve
        `keys`; sets nothing."""
        self.validate_params()
        self._layout(store).check(store, keys, where)

    # -- fit ----------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, *args: Any, valid: Data | None = None,
            valid_y: Any = None, progress: object | None = None) -> HeadEstimator:
        """Fit on `X` (and labels `y`, else the label column); early stopping uses `valid` if
        given, else a held-out part of the training rows."""
        store, data, rest = self._split(X, (y, *args))
        y = rest[0] if rest else None
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
        x = inputs.fit(store, keys, where)
        self.inputs_ = inputs
        self.head_kind_ = self.head_kind
        self.fit_info_: dict[str, Any] = {"rows": len(keys)}
        self.networks_: list[HeadNetwork] = []
        if self.head_kind_ == "logreg":
            assert isinstance(x, LazyInputs)
            self.model_, info = fit_logreg(x.matrix(), targets, self.C, self.max_iter, self.seed)
            self.fit_info_.update(info)
        else:
            val = self._validation(store, valid, valid_y)
            self._train_networks(x, targets, val, progress)
        self.fit_info_["train_seconds"] = round(time.perf_counter() - start, 3)
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
        check_classes(y, self.labels_, where)
        return y

    def _targets(self, labels: pd.Series, where: str) -> np.ndarray:
        """Targets of other rows, under what fit learned."""
        if self.task == "regression":
            return regression_targets(labels, self.label_col or "label", where)
        return self.labels_.encode(labels, where)

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
                        progress: object | None) -> None:
        """Train `ensemble` networks, seeds `seed`, `seed + 1`, ...; early stopping on `val`,
        else on a held-out part of the training rows (`valid_fraction`), else none."""
        y = self._torch_targets(targets)
        train_x, train_y = x, y
        if val is None and self.valid_fraction > 0 and len(targets) >= 10:
            fit_idx, held = holdout(None if self.task == "regression" else targets,
                                    len(targets), self.valid_fraction, self.seed)
            val = (x.subset(held), y[held]) if len(held) else None
            train_x, train_y = x.subset(fit_idx), y[fit_idx]
        width = train_x.width
        best, ran = [], []
        for member in range(self.ensemble):
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
        self.fit_info_.update({"best_epoch": best[0] if len(best) == 1 else best,
                               "epochs_run": ran[0] if len(ran) == 1 else ran})

    # -- fitted state -------------------------------------------------------------------------
    def check_fitted(self) -> None:
        if not hasattr(self, "inputs_"):
            raise HeadNotFittedError("this head is not fitted yet; call fit first")

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
    def layouts_(self) -> list[InputLayout]:
        """What the head reads from a store (one layout; an ensemble has one per member)."""
        self.check_fitted()
        return [self.inputs_.layout]

    # -- predict ------------------------------------------------------------------------------
    def raw_output(self, X: Any, *args: Any) -> np.ndarray:
        """Class probabilities [n, classes], or regression predictions [n]."""
        self.check_fitted()
        store, data, _ = self._split(X, args)
        keys, _, where = keys_and_labels(store, data, None, self.label_col, need_labels=False)
        self._featurize_given_texts(store, data, self.inputs_.layout.bind(store))
        x = self.inputs_.transform(store, keys, where)
        if self.head_kind_ == "logreg":
            assert isinstance(x, LazyInputs)
            step = PREDICT_CHUNK
            return np.concatenate([self.model_.predict_proba(x.matrix(slice(i, i + step)))
                                   for i in range(0, len(x), step)])
        with torch.inference_mode(), torch_threads(pick_threads(len(x) * x.width)):
            outs = [forward_all(net, x).double() for net in self.networks_]
        # an ensemble averages the members' probabilities (or predictions, for regression)
        if self.task == "regression":
            out = torch.stack([o[:, 0] for o in outs]).mean(0)
            return out.numpy() * self.target_std_ + self.target_mean_
        return torch.stack([torch.softmax(o, dim=1) for o in outs]).mean(0).numpy()

    def evaluate(self, X: Any, y: Any = None, *args: Any) -> dict[str, float]:
        """The task's metrics on labelled rows."""
        self.check_fitted()
        store, data, rest = self._split(X, (y, *args))
        y = rest[0] if rest else None
        _, labels, where = keys_and_labels(store, data, y, self.label_col, need_labels=True)
        truth = self._targets(labels, where)
        out = self.raw_output(store, data)
        pred = out if self.task == "regression" else out.argmax(axis=1)
        return scores(self.task, truth, pred)

    # -- save and load ------------------------------------------------------------------------
    def saved_config(self) -> dict[str, Any]:
        """The parameters as JSON (the head resolved), plus the task."""
        cfg = self.get_params()
        cfg.pop("store")  # where the head was fitted is not part of it
        cfg["layers"] = list(cfg["layers"]) if cfg["layers"] is not None else None
        cfg["fuse"] = list(cfg["fuse"])
        cfg["head"] = self.head_kind_
        cfg["task"] = self.task
        return cfg

    def artifact(self, metrics: dict | None = None, extra: dict | None = None
                 ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(named arrays, document): what `save` writes, and what an ensemble of heads keeps
        per member."""
        self.check_fitted()
        tensors = self.inputs_.state()
        if self.head_kind_ == "logreg":
            tensors.update(logreg_state(self.model_))
        for i, net in enumerate(self.networks_):
            prefix = "net." if i == 0 else f"net{i}."
            tensors.update({f"{prefix}{k}": v.detach().cpu().numpy().copy()
                            for k, v in net.state_dict().items()})
        doc: dict[str, Any] = {"config": self.saved_config(), **self.inputs_.layout.to_json(),
                               "input_dims": self.inputs_.dims, "fit": self.fit_info_,
                               "metrics": metrics or {}}
        if self.task == "classification":
            doc["labels"] = self.labels_.classes
        else:
            doc["target"] = {"mean": self.target_mean_, "std": self.target_std_}
        doc.update(extra or {})
        return tensors, doc

    def save(self, store: Store | str | Path, name: str, metrics: dict | None = None,
             extra: dict | None = None, overwrite: bool = False) -> Path:
        """Write this head to STORE/heads/NAME (safetensors + JSON); `load` reads it back. A head
        already saved under NAME is replaced only with `overwrite`."""
        tensors, doc = self.artifact(metrics, extra)
        return write_head(store, name, tensors, doc, overwrite=overwrite)

    @classmethod
    def load(cls, store: Store | str | Path, name: str) -> HeadEstimator:
        """A fitted head read back from STORE/heads/NAME; it predicts what the saved one did."""
        return restore_head(store, name,
                            lambda doc, tensors: cls.from_artifact(doc, tensors, name, store))

    @classmethod
    def from_artifact(cls, doc: dict[str, Any], tensors: dict[str, np.ndarray], name: str,
                      store: Store | str | Path) -> HeadEstimator:
        """The head `artifact` described, predicting from `store`."""
        if doc.get("kind") == "sequence":
            raise HeadError(f"head {name} is a sequence head; load it with "
                            "featstore.heads.sequence_estimator.SequenceClassifier.load")
        if doc.get("kind") == "ensemble":
            raise HeadError(f"head {name} is an ensemble of heads; load it with "
                            "featstore.heads.load_head")
        cfg = dict(doc["config"])
        klass = HeadRegressor if cfg.pop("task", None) == "regression" else HeadClassifier
        if not issubclass(klass, cls):
            raise HeadError(f"head {name} is a {klass.__name__}, not a {cls.__name__}")
        names = set(klass().get_params())
        cfg["fuse"] = tuple(cfg.get("fuse", ()))  # JSON has no tuples
        head = klass(**{k: v for k, v in cfg.items() if k in names})
        head.store = store  # predict(texts) reads the store it was loaded from
        head.inputs_ = HeadInputs(InputLayout.from_json(doc), head.pool, head.flat,
                                  head.flat and head.fuse_mode == "concat",
                                  head.normalize).load_state(doc["input_dims"], tensors)
        head.head_kind_ = head.head_kind
        head.fit_info_ = doc.get("fit", {})
        head.metrics_ = doc.get("metrics", {})
        if klass.task == "classification":
            head.labels_ = LabelMap(list(doc["labels"]))
            head.classes_ = np.array(head.labels_.classes, dtype=object)
        else:
            head.target_mean_ = float(doc["target"]["mean"])
            head.target_std_ = float(doc["target"]["std"])
        head.networks_ = []
        if head.head_kind_ == "logreg":
            head.model_ = logreg_from_state(tensors, float(head.fit_info_.get("C", 1.0)))
            return head
        for i in range(int(cfg.get("ensemble", 1))):
            prefix = "net." if i == 0 else f"net{i}."
            net = head._network()
            state = {k[len(prefix):]: torch.from_numpy(v.copy()) for k, v in tensors.items()
                     if k.startswith(prefix)}
            try:
                net.load_state_dict(state)
            except RuntimeError as exc:
                raise HeadError(f"head {name}: weights do not fit its configuration "
                                f"({str(exc).splitlines()[0]})") from None
            head.networks_.append(net.eval())
        return head


class HeadClassifier(ClassifierMixin, HeadEstimator):
    """A pooling + fusion + head classifier trained from stored features."""

    task = "classification"

    def predict_proba(self, X: Any, *args: Any) -> np.ndarray:
        """[n, n_classes] probabilities; column i is `classes_[i]`."""
        return self.raw_output(X, *args)

    def predict(self, X: Any, *args: Any) -> np.ndarray:
        self.check_fitted()
        return np.array(self.labels_.decode(self.predict_proba(X, *args).argmax(axis=1)),
                        dtype=object)

    def score(self, X: Any, y: Any = None, *args: Any, sample_weight: Any = None) -> float:
        """Accuracy, as scikit-learn classifiers score."""
        if sample_weight is not None:
            raise HeadError("score takes no sample_weight")
        return self.evaluate(X, y, *args)["accuracy"]


class HeadRegressor(RegressorMixin, HeadEstimator):
    """A pooling + fusion + head regressor (MSE loss) trained from stored features; its head is
    an MLP unless `head` says otherwise."""

    task = "regression"

    def predict(self, X: Any, *args: Any) -> np.ndarray:
        return self.raw_output(X, *args)

    def score(self, X: Any, y: Any = None, *args: Any, sample_weight: Any = None) -> float:
        """R squared, as scikit-learn regressors score."""
        if sample_weight is not None:
            raise HeadError("score takes no sample_weight")
        store, data, rest = self._split(X, (y, *args))
        y = rest[0] if rest else None
        _, labels, where = keys_and_labels(store, data, y, self.label_col, need_labels=True)
        truth = regression_targets(labels, self.label_col or "label", where)
        pred = self.predict(store, data)
        return float(1 - np.sum((truth - pred) ** 2) / np.sum((truth - truth.mean()) ** 2))


def make_head(task: str = "classification", **params: Any) -> HeadEstimator:
    """A classifier or regressor by task name."""
    if task not in TASKS:
        raise HeadError(f"unknown --task {task!r}; choose classification or regression")
    return (HeadRegressor if task == "regression" else HeadClassifier)(**params)
