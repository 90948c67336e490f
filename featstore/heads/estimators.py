"""The Python API: `HeadClassifier` and `HeadRegressor`, estimators in scikit-learn's habits.

Parameters go to `__init__` and are only stored there; `fit(store, data)` does all the work and
leaves learned state in attributes ending in `_`; `predict`, `predict_proba` and `score` take the
same (store, data) pair. `data` is a dataset name in the store, a DataFrame with a `_key` (or
`text`) column, or a list of texts (with `y` given to `fit`).

    >>> import featstore
    >>> from featstore.heads import HeadClassifier
    >>> store = featstore.open("featstore")
    >>> clf = HeadClassifier(pool="mean-max", head="mlp").fit(store, "banking77")
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from featstore.heads import data as data_mod
from featstore.heads.errors import HeadError
from featstore.heads.features import (
    Source,
    check_present,
    encoder_layers,
    gather_features,
    gather_tokens,
    resolve_source,
)
from featstore.heads.fusion import FUSE_MODES, Normalizer, check_normalization
from featstore.heads.logreg import fit_logreg
from featstore.heads.metrics import scores
from featstore.heads.networks import HeadNetwork, check_head
from featstore.heads.poolings import (
    check_pooling,
    choose_layers,
    is_trainable,
    pad_tokens,
    pooling_module,
    stored_features,
)
from featstore.heads.training import (
    Inputs,
    LazyInputs,
    TrainOptions,
    forward_all,
    pick_threads,
    torch_threads,
    train_network,
)
from featstore.store import KEY_COLUMN, Store, keys_for

Data = str | pd.DataFrame | Sequence[str]
PREDICT_CHUNK = 65536  # rows normalised and scored at a time by logreg heads


class _HeadBase:
    _task = "classification"

    def __init__(
        self,
        pool: str = "mean",
        head: str | None = None,
        *,
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

    # -- parameters ---------------------------------------------------------------------------
    _PARAMS = ("pool", "head", "layers", "layer_start", "of", "fuse", "fuse_mode", "normalize",
               "hidden", "dropout", "epochs", "lr", "weight_decay", "batch_size", "patience",
               "label_smoothing", "C", "max_iter", "proj_dim", "valid_fraction", "encoder",
               "label_col", "seed", "ensemble")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {p: getattr(self, p) for p in self._PARAMS}

    def set_params(self, **params: Any) -> _HeadBase:
        for k, v in params.items():
            if k not in self._PARAMS:
                raise HeadError(f"unknown parameter {k!r}")
            setattr(self, k, v)
        return self

    def _config(self) -> dict[str, Any]:
        cfg = self.get_params()
        cfg["layers"] = list(cfg["layers"]) if cfg["layers"] is not None else None
        cfg["fuse"] = list(cfg["fuse"])
        cfg["head"] = self.head_kind
        cfg["task"] = self._task
        return cfg

    @property
    def head_kind(self) -> str:
        """The head actually used: `head`, or by default logreg for a fixed pooling on a
        classification task and mlp otherwise."""
        if self.head is not None:
            return self.head
        simple = not is_trainable(self.pool) and self.fuse_mode == "concat"
        return "logreg" if self._task == "classification" and simple else "mlp"

    @property
    def _flat(self) -> bool:
        """True when inputs are pooled in numpy (fixed pooling, or `weighted` under logreg)."""
        return not is_trainable(self.pool) or (self.pool == "weighted" and
                                                self.head_kind == "logreg")

    def _validate(self) -> None:
        check_pooling(self.pool, self.of)
        check_head(self.head_kind)
        check_normalization(self.normalize)
        if self.fuse_mode not in FUSE_MODES:
            raise HeadError(f"unknown --fuse-mode {self.fuse_mode!r}; choose one of: "
                            f"{', '.join(FUSE_MODES)}")
        if self.head_kind == "logreg":
            if self._task == "regression":
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
        if not 0 <= self.dropout < 1:
            raise HeadError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.C is not None and self.C <= 0:
            raise HeadError(f"--C must be positive, got {self.C}")

    # -- rows and labels ----------------------------------------------------------------------
    def _rows(self, store: Store, data: Data, y: Any, need_labels: bool
              ) -> tuple[list[str], pd.Series | None, str]:
        """Keys, label values (or None) and a name for messages."""
        if isinstance(data, str):
            df = store.dataset(data)
            where = f"dataset {data!r}"
        elif isinstance(data, pd.DataFrame):
            df, where = data, "the given rows"
            if KEY_COLUMN not in df.columns:
                if "text" not in df.columns:
                    raise HeadError(f"rows need a {KEY_COLUMN!r} or 'text' column "
                                    f"(columns: {', '.join(map(str, df.columns))})")
                df = df.assign(**{KEY_COLUMN: keys_for(df["text"].astype(str))})
        else:
            texts = list(data)
            if not all(isinstance(t, str) for t in texts):
                raise HeadError("data must be a dataset name, a DataFrame, or a list of texts")
            df = pd.DataFrame({KEY_COLUMN: keys_for(texts)})
            where = "the given texts"
        if not len(df):
            raise HeadError(f"{where} has no rows")
        keys = df[KEY_COLUMN].astype(str).tolist()
        if y is not None:
            labels = pd.Series(list(y) if not isinstance(y, pd.Series) else y.tolist())
            if len(labels) != len(keys):
                raise HeadError(f"{where} has {len(keys)} rows but {len(labels)} labels")
            return keys, labels, where
        if not need_labels:
            return keys, None, where
        col = data_mod.label_column(df, self.label_col, where)
        labels = df[col].reset_index(drop=True)
        data_mod.check_label_values(labels, col, where)
        return keys, labels, where

    def _encode_targets(self, labels: pd.Series, where: str, fitting: bool) -> np.ndarray:
        if self._task == "regression":
            return data_mod.regression_targets(labels, self.label_col or "label", where)
        if fitting:
            self.labels_ = data_mod.LabelMap.fit(labels)
            y = self.labels_.encode(labels, where)
            data_mod.check_classes(y, self.labels_, where)
            return y
        return self.labels_.encode(labels, where)

    # -- features -----------------------------------------------------------------------------
    def _resolve(self, store: Store) -> None:
        self.encoder_id_ = store.resolve_encoder(self.encoder, kind="encoder")
        self.encoder_fingerprint_ = store.encoder_entry(self.encoder_id_).fingerprint
        self.features_ = stored_features(self.pool, self.of)
        self.layers_ = choose_layers(self.pool, encoder_layers(store, self.encoder_id_),
                                     list(self.layers) if self.layers else None,
                                     self.layer_start)
        if self.pool != "pooler":
            store.layer_positions(self.encoder_id_, self.layers_)  # an unstored layer -> error
        self.sources_: list[Source] = [resolve_source(store, s) for s in self.fuse]
        self.source_fingerprints_ = [store.encoder_entry(s.encoder_id).fingerprint
                                     for s in self.sources_]

    def check_data(self, store: Store, keys: list[str], where: str) -> None:
        """Fail fast, before any training, if options or stored features cannot serve `keys`."""
        self._validate()
        self._resolve(store)
        check_present(store, self.encoder_id_, keys, self.features_, where)
        for s in self.sources_:
            check_present(store, s.encoder_id, keys, [s.feature], where)

    def _gather(self, store: Store, keys: list[str], where: str) -> tuple[Any, list[np.ndarray]]:
        check_present(store, self.encoder_id_, keys, self.features_, where)
        if self.pool == "attention":
            enc: Any = gather_tokens(store, self.encoder_id_, keys, self.layers_[-1])
        elif self.pool == "pooler":
            enc = gather_features(store, self.encoder_id_, keys, ["pooler"], None)
        else:
            # fixed poolings (and `weighted` under logreg) are applied while reading
            enc = gather_features(store, self.encoder_id_, keys, self.features_, self.layers_,
                                  self.pool if self._flat else "none")
        sources = []
        for s in self.sources_:
            check_present(store, s.encoder_id, keys, [s.feature], where)
            sources.append(gather_features(store, s.encoder_id, keys, [s.feature],
                                           None if s.layer is None else [s.layer], "mean"))
        return enc, sources

    def _prepare(self, enc: Any, sources: list[np.ndarray], fitting: bool
                 ) -> Inputs | LazyInputs:
        """Fit the normalisers on training rows (statistics read in chunks) and wrap the rows:
        `LazyInputs` normalise per minibatch; attention's padded token states are `Inputs`."""
        if fitting:
            self.normalizers_ = {"enc": Normalizer(self.normalize)}
            self.normalizers_.update({f"src{i}": Normalizer(self.normalize)
                                      for i in range(len(sources))})
        norms = self.normalizers_
        src_norms = [norms[f"src{i}"] for i in range(len(sources))]
        if fitting:
            for s, norm in zip(sources, src_norms, strict=True):
                norm.fit(s)
        if self.pool == "attention":
            if fitting:
                norms["enc"].fit_rows(enc)
            padded, mask = pad_tokens([norms["enc"].transform(r) for r in enc])
            if fitting:
                self.input_dims_ = {"enc": int(padded.shape[-1]), "layers": int(padded.shape[1]),
                                    "sources": [int(s.shape[1]) for s in sources]}
            srcs = [torch.from_numpy(n.transform(s)) for s, n in zip(sources, src_norms,
                                                                      strict=True)]
            return Inputs(torch.from_numpy(padded), srcs, torch.from_numpy(mask))
        if fitting:
            norms["enc"].fit(enc)
            self.input_dims_ = {"enc": int(enc.shape[-1]),
                                "layers": int(enc.shape[1]) if enc.ndim == 3 else 1,
                                "sources": [int(s.shape[1]) for s in sources]}
        return LazyInputs([enc, *sources], [n.transform for n in (norms["enc"], *src_norms)],
                          join=self._flat and self.fuse_mode == "concat")

    def _lazy_inputs(self, store: Store, keys: list[str], where: str, fitting: bool
                     ) -> Inputs | LazyInputs:
        enc, sources = self._gather(store, keys, where)
        return self._prepare(enc, sources, fitting)

    def _inputs(self, store: Store, keys: list[str], where: str, fitting: bool) -> Any:
        """The normalised inputs in memory: a float32 matrix for logreg, else `Inputs`."""
        x = self._lazy_inputs(store, keys, where, fitting)
        if isinstance(x, Inputs):
            return x
        if self.head_kind == "logreg":
            return x.matrix()
        return x.take(np.arange(len(x)))

    # -- network ------------------------------------------------------------------------------
    def _out_dim(self) -> int:
        return 1 if self._task == "regression" else len(self.labels_.classes)

    def _build_network(self) -> HeadNetwork:
        dims = self.input_dims_
        flat_concat = self._flat and self.fuse_mode == "concat"
        pooling = None if self._flat else pooling_module(self.pool, dims["layers"], dims["enc"],
                                                         self.hidden)
        enc_dim = dims["enc"] + (sum(dims["sources"]) if flat_concat else 0)
        return HeadNetwork(pooling, enc_dim, [] if flat_concat else dims["sources"],
                           self.fuse_mode, self.proj_dim, self.head_kind, self._out_dim(),
                           self.hidden, self.dropout)

    # -- fit ----------------------------------------------------------------------------------
    def fit(self, store: Store, data: Data, y: Any = None, valid: Data | None = None,
            valid_y: Any = None, progress: object | None = None) -> _HeadBase:
        """Fit on `data`; early stopping uses `valid` if given, else a held-out part of it."""
        self._validate()
        start = time.perf_counter()
        keys, labels, where = self._rows(store, data, y, need_labels=True)
        self._resolve(store)
        targets = self._encode_targets(labels, where, fitting=True)
        x = self._lazy_inputs(store, keys, where, fitting=True)
        self.fit_info_: dict[str, Any] = {"rows": len(keys)}
        if self.head_kind == "logreg":
            assert isinstance(x, LazyInputs)
            self.model_, info = fit_logreg(x.matrix(), targets, self.C, self.max_iter, self.seed)
            self.fit_info_.update(info)
        else:
            self._fit_torch(store, x, targets, valid, valid_y, progress)
        self.fit_info_["train_seconds"] = round(time.perf_counter() - start, 3)
        return self

    def _fit_torch(self, store: Store, x: Inputs | LazyInputs, targets: np.ndarray,
                   valid: Data | None, valid_y: Any, progress: object | None) -> None:
        if self._task == "regression":
            self.target_mean_ = float(np.mean(targets))
            self.target_std_ = float(np.std(targets)) or 1.0
            y = torch.tensor((targets - self.target_mean_) / self.target_std_, dtype=torch.float32)
        else:
            y = torch.from_numpy(targets)
        if valid is not None:
            vkeys, vlabels, vwhere = self._rows(store, valid, valid_y, need_labels=True)
            vt = self._encode_targets(vlabels, vwhere, fitting=False)
            vy = (torch.tensor((vt - self.target_mean_) / self.target_std_, dtype=torch.float32)
                  if self._task == "regression" else torch.from_numpy(vt))
            val = (self._lazy_inputs(store, vkeys, vwhere, fitting=False), vy)
            train_x, train_y = x, y
        elif self.valid_fraction > 0 and len(targets) >= 10:
            fit_idx, held = data_mod.holdout(None if self._task == "regression" else targets,
                                             len(targets), self.valid_fraction, self.seed)
            val = (x.subset(held), y[held]) if len(held) else None
            train_x, train_y = x.subset(fit_idx), y[fit_idx]
        else:
            val, train_x, train_y = None, x, y
        width = train_x.width
        self.networks_: list[HeadNetwork] = []
        best, ran = [], []
        for member in range(self.ensemble):
            seed = self.seed + member
            torch.manual_seed(seed)
            net = self._build_network()
            opts = TrainOptions(epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay,
                                batch_size=self.batch_size, patience=self.patience,
                                label_smoothing=self.label_smoothing if self._task ==
                                "classification" else 0.0, seed=seed)
            with torch_threads(pick_threads(len(train_x) * width)):
                result = train_network(net, self._task, train_x, train_y, val, opts, progress)
            net.eval()
            self.networks_.append(net)
            best.append(result.best_epoch)
            ran.append(result.epochs_run)
        self.fit_info_.update({"best_epoch": best[0] if len(best) == 1 else best,
                               "epochs_run": ran[0] if len(ran) == 1 else ran})

    @property
    def network_(self) -> HeadNetwork:
        """The (first) trained network; `networks_` holds every ensemble member."""
        return self.networks_[0]

    # -- predict ------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "encoder_id_"):
            raise HeadError("this head is not fitted yet; call fit first")

    def _check_store(self, store: Store) -> None:
        """The store must hold the very encoder (same fingerprint) the head was trained on."""
        from featstore.heads.artifacts import match_encoder

        self.encoder_id_ = match_encoder(store, self.encoder_fingerprint_, "encoder")
        for i, fp in enumerate(self.source_fingerprints_):
            s = self.sources_[i]
            self.sources_[i] = Source(s.name, match_encoder(store, fp, f"--fuse {s.name}"),
                                      s.feature, s.layer)

    def _raw_output(self, store: Store, data: Data) -> np.ndarray:
        self._check_fitted()
        self._check_store(store)
        keys, _, where = self._rows(store, data, None, need_labels=False)
        x = self._lazy_inputs(store, keys, where, fitting=False)
        if self.head_kind == "logreg":
            assert isinstance(x, LazyInputs)
            step = PREDICT_CHUNK
            return np.concatenate([self.model_.predict_proba(x.matrix(slice(i, i + step)))
                                   for i in range(0, len(x), step)])
        width = x.width
        with torch.inference_mode(), torch_threads(pick_threads(len(x) * width)):
            outs = [forward_all(net, x).double() for net in self.networks_]
        # an ensemble averages the members' probabilities (or predictions, for regression)
        if self._task == "regression":
            out = torch.stack([o[:, 0] for o in outs]).mean(0)
            return out.numpy() * self.target_std_ + self.target_mean_
        return torch.stack([torch.softmax(o, dim=1) for o in outs]).mean(0).numpy()

    def evaluate(self, store: Store, data: Data, y: Any = None) -> dict[str, float]:
        """The task's metrics on labelled rows."""
        self._check_fitted()
        keys, labels, where = self._rows(store, data, y, need_labels=True)
        truth = self._encode_targets(labels, where, fitting=False)
        out = self._raw_output(store, data)
        pred = out if self._task == "regression" else out.argmax(axis=1)
        return scores(self._task, truth, pred)


class HeadClassifier(_HeadBase):
    """A pooling + fusion + head classifier trained from stored features."""

    _task = "classification"

    @property
    def classes_(self) -> list:
        return self.labels_.classes

    def predict_proba(self, store: Store, data: Data) -> np.ndarray:
        """[n, n_classes] probabilities; column i is `classes_[i]`."""
        return self._raw_output(store, data)

    def predict(self, store: Store, data: Data) -> np.ndarray:
        return np.array(self.labels_.decode(self.predict_proba(store, data).argmax(axis=1)),
                        dtype=object)

    def score(self, store: Store, data: Data, y: Any = None) -> float:
        """Accuracy, as scikit-learn classifiers score."""
        return self.evaluate(store, data, y)["accuracy"]


class HeadRegressor(_HeadBase):
    """A pooling + fusion + head regressor (MSE loss) trained from stored features."""

    _task = "regression"

    def __init__(self, pool: str = "mean", head: str | None = "mlp", **kwargs: Any) -> None:
        kwargs.setdefault("label_smoothing", 0.0)
        super().__init__(pool, head, **kwargs)

    def predict(self, store: Store, data: Data) -> np.ndarray:
        return self._raw_output(store, data)

    def score(self, store: Store, data: Data, y: Any = None) -> float:
        """R squared, as scikit-learn regressors score."""
        keys, labels, where = self._rows(store, data, y, need_labels=True)
        truth = data_mod.regression_targets(labels, self.label_col or "label", where)
        pred = self.predict(store, data)
        return float(1 - np.sum((truth - pred) ** 2) / np.sum((truth - truth.mean()) ** 2))


def make_head(task: str = "classification", **params: Any) -> _HeadBase:
    """A classifier or regressor by task name."""
    if task == "classification":
        return HeadClassifier(**params)
    if task == "regression":
        return HeadRegressor(**params)
    raise HeadError(f"unknown --task {task!r}; choose classification or regression")


def _save(self: _HeadBase, store: Store, name: str, metrics: dict | None = None) -> Any:
    """Write this head to STORE/heads/NAME (see `featstore.heads.artifacts`)."""
    from featstore.heads.artifacts import save_head

    return save_head(self, store, name, metrics)


def _load(cls: type, store: Store, name: str) -> _HeadBase:
    """A fitted head read back from STORE/heads/NAME."""
    from featstore.heads.artifacts import load_head

    head = load_head(store, name)
    if not isinstance(head, cls):
        raise HeadError(f"head {name} is a {type(head).__name__}, not a {cls.__name__}")
    return head


_HeadBase.save = _save  # type: ignore[attr-defined]
_HeadBase.load = classmethod(_load)  # type: ignore[attr-defined]
