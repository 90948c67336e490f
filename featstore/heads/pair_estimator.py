"""`PairClassifier` and `PairRegressor`: scikit-learn estimators over pairs of texts (is B a
paraphrase of A, does A entail B, how similar are they), trained from the store in seconds.

`X` is a list of (a, b) tuples of raw texts (those the store lacks are encoded on the fly), a
DataFrame of two text columns (or `pair_cols`, or a pair dataset's rows), or the name of a pair
dataset (`featurize --pair-cols A B`). Parameters are `PAIR_HEAD`'s (featstore.heads.params):

- `source`: `bi` reads each text's stored vectors, pooled and fused as a per-text head's
  (`pool`, `layers`, `of`, `fuse`; `soft-align` pools each text's token states against its
  partner's, heads/poolings.py); `cross` reads the pair's joint encoding (`featurize
  --cross`, with a sequence classifier's logits); `both` reads both.
- `combine`: how the two vectors u, v become one row: u, v, absdiff (|u-v|), product (u*v),
  cosine (per layer, feature and source, of the vectors as stored), align (how the two texts'
  token states align in each layer read: `featurize --tokens`; heads/alignment.py).
- `head`: any per-text head (logreg, linear, mlp) over that row, ridge (regression), boosting
  (gradient-boosted trees, for a narrow row such as align + cosine), `cosine`
  (the plain cosine of u and v: thresholds learned on the training pairs for classes, a linear
  rescaling for values; the baseline every pair head should beat), or `projection` (a learned
  projection of u and v scored by cosine, trained with the CoSENT similarity loss).
- `symmetric`: the order of a pair does not matter: train on both orders, predict the average
  of both.

    >>> from featstore.heads import PairRegressor
    >>> reg = PairRegressor(store="featstore", head="projection").fit("stsb-train")
    >>> reg.predict([("A man plays a guitar.", "Someone plays music.")])
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
from featstore.heads.boosting import BoostedTrees, fit_boosting
from featstore.heads.errors import HeadError, ParamError
from featstore.heads.inputs import HeadInputs, InputLayout
from featstore.heads.kinds import (
    HEAD_KINDS,
    check_combination,
    default_pair_head,
    pooled_while_read,
    pooling,
)
from featstore.heads.labels import LabelMap, check_classes, regression_targets
from featstore.heads.logreg import fit_logreg, logreg_from_state, logreg_state
from featstore.heads.metrics import positive_f1
from featstore.heads.pair_inputs import PairBatches, PairInputs, cross_layout
from featstore.heads.pair_networks import (
    PairNetwork,
    build_pair_network,
    cosent_loss,
    rank_score,
)
from featstore.heads.pair_rows import PairRows, pair_rows
from featstore.heads.params import PAIR_HEAD, ParamSet
from featstore.heads.ridge import fit_ridge, ridge_from_state, ridge_state
from featstore.heads.splits import holdout
from featstore.heads.training import (
    TrainOptions,
    forward_all,
    networks_from_state,
    networks_state,
    pick_threads,
    torch_threads,
    train_network,
)
from featstore.store import FeatstoreError, Store

CALIBRATION_C = 100.0  # the cosine's logistic calibration: barely regularised, one feature


class PairEstimator(StoreHead):
    """A head over pairs of stored texts; see the module docstring and the subclasses."""

    params: ClassVar[ParamSet] = PAIR_HEAD
    kind = "pair"

    # -- what the parameters mean -------------------------------------------------------------
    @property
    def head_kind(self) -> str:
        """The head used: `head`, else logreg (classification) or ridge (regression) for a
        fixed pooling, mlp otherwise."""
        if self.head is not None:
            return self.head
        return default_pair_head(self.pool if self.source != "cross" else "mean", self.task,
                                 self.fuse_mode)

    @property
    def flat(self) -> bool:
        """Each text's rows arrive pooled (a fixed pooling, or `weighted` under a linear
        model)."""
        return pooled_while_read(self.pool, self.head_kind)

    def check_combination(self) -> None:
        head = self.head_kind
        check_combination(self.pool, head, self.task, self.fuse_mode, unit="pair")
        if not self.combine and self.source == "bi":
            raise ParamError("{combine} names no part of the pair's row; name some of: u v "
                             "absdiff product cosine")
        if "align" in self.combine and self.source == "cross":
            raise ParamError("{combine} align compares each text's token states; it needs "
                             "{source=}bi or both")
        if self.source != "bi" and head in ("cosine", "projection"):
            raise ParamError(f"{{head=}}{head} compares each text's vectors; it needs "
                             "{source=}bi")
        if self.source == "cross":
            if self.fuse:
                raise ParamError("{fuse} adds vectors of each text; {source=}cross reads the "
                                 "pair's joint encoding only (use {source=}both)")
            if pooling(self.pool).trainable and not self.flat:
                raise ParamError(f"{{pool=}}{self.pool} is trained with the head; "
                                 "{source=}cross reads fixed poolings of the joint encoding")
        if self.pair_cols is not None and len(self.pair_cols) != 2:
            raise ParamError(f"{{pair_cols}} names two columns, got {len(self.pair_cols)}")

    def default_name(self) -> str:
        source = "" if self.source == "bi" else f"{self.source}-"
        return f"pair-{source}{self.pool}-{self.head_kind}"

    # -- where the data lives -----------------------------------------------------------------
    def _rows(self, store: Store, data: Any, y: Any, need_labels: bool) -> PairRows:
        return pair_rows(store, data, y, self.label_col, self.pair_cols, need_labels)

    def _encoder_fingerprint(self, store: Store) -> dict:
        return store.encoder_entry(store.resolve_encoder(self.encoder, kind="encoder")
                                   ).fingerprint

    def _resolve(self, store: Store, rows: PairRows) -> PairInputs:
        """What these parameters read of this store; pairs' texts the store lacks (given as
        texts) are encoded first, jointly too where the cross source is read."""
        if rows.texts is not None and not store.has_encoder():
            self._encode_texts(store, rows, None, ["cls", "mean", "max"])
        side = cross = None
        flat = self.flat
        if self.source in ("bi", "both"):
            layout = InputLayout.resolve(store, self.pool, self.of, self.layers,
                                         self.layer_start, self.fuse, self.encoder)
            self._encode_texts(store, rows, layout.encoder_fingerprint,
                               self._text_features(layout))
            side = HeadInputs(layout, self.pool, flat, flat and self.fuse_mode == "concat",
                              self.normalize)
        if self.source in ("cross", "both"):
            fp = side.layout.encoder_fingerprint if side is not None else \
                self._encoder_fingerprint(store)
            self._encode_pairs(store, rows, fp, pooling(self.pool).features(self.of))
            layout = cross_layout(store, fp, self.pool, self.of,
                                  list(self.layers) if self.layers else None, self.layer_start)
            cross = HeadInputs(layout, self.pool, True, True, self.normalize)
        return PairInputs(self.source, tuple(self.combine), side, cross)

    def _encode_texts(self, store: Store, rows: PairRows, fingerprint: dict | None,
                      features: list[str]) -> None:
        if rows.texts is None:
            return
        texts = [t for pair in rows.texts for t in pair]
        if fingerprint is not None:
            enc = store.find_encoder(fingerprint)
            if enc is not None and not set(features) <= set(
                    store.encoder_entry(enc).feature_shapes):
                return  # a kind of feature never stored: the layout check says which flag
        try:
            store.featurize_missing(texts, fingerprint, features,
                                    model=self.encoder if fingerprint is None else None)
        except FeatstoreError as exc:
            raise HeadError(f"some of the given texts are not featurized, and encoding them "
                            f"failed: {exc}") from None

    def _encode_pairs(self, store: Store, rows: PairRows, fingerprint: dict,
                      features: list[str]) -> None:
        if rows.texts is None:
            return
        try:
            store.featurize_missing_pairs(rows.texts, fingerprint, features)
        except FeatstoreError as exc:
            raise HeadError(f"some of the given pairs are not encoded jointly, and encoding "
                            f"them failed: {exc}") from None

    def _bound(self, store: Store, rows: PairRows) -> PairInputs:
        """The fitted inputs with this store's ids; what the rows lack is encoded first."""
        inputs = self.inputs_
        for h in (inputs.side, inputs.cross):
            if h is None:
                continue
            layout = h.layout
            if layout.encoder_fingerprint.get("kind") == "cross":
                self._encode_pairs(store, rows, layout.encoder_fingerprint.get("encoder", {}),
                                   layout.features)
            else:
                self._encode_texts(store, rows, layout.encoder_fingerprint,
                                   self._text_features(layout))
        return inputs

    def _text_features(self, layout: InputLayout) -> list[str]:
        """What each text needs stored: the layout's features, and token states to align."""
        return list(dict.fromkeys(layout.features + (["tokens"] if "align" in self.combine
                                                      else [])))

    def check_inputs(self, store: Store, data: Any, where: str) -> None:
        """Fail fast, before any training, if these parameters or the store cannot serve
        `data`'s pairs; sets nothing."""
        self.validate_params()
        rows = self._rows(store, data, None, need_labels=False)
        if rows.texts is not None:
            return  # given as texts: encoded when fitted
        inputs = self._resolve(store, rows)
        inputs.check_tokens(store, rows)
        for h in (inputs.side, inputs.cross):
            if h is not None:
                keys = rows.pair_keys if h is inputs.cross else \
                    list(dict.fromkeys(rows.keys_a + rows.keys_b))
                h.layout.check(store, keys, where)
        if self.symmetric and inputs.cross is not None:
            inputs.cross.layout.check(store, rows.swapped().pair_keys, where)

    # -- fit ----------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, *args: Any, valid: Any = None, valid_y: Any = None,
            progress: object | None = None) -> PairEstimator:
        """Fit on the pairs `X` (labels `y`, else the label column); early stopping of torch
        heads uses `valid` if given, else a held-out part of the training pairs."""
        store, data, y = self.store_data_y(X, y, args)
        self.validate_params()
        start = time.perf_counter()
        rows = self._rows(store, data, y, need_labels=True)
        self.text_columns_ = rows.columns
        self.inputs_ = self._resolve(store, rows)
        targets = self._fit_targets(rows.labels, rows.where)
        self.head_kind_ = self.head_kind
        if self.head_kind_ == "projection" and self.task == "classification" and \
                len(self.labels_.classes) != 2:
            raise HeadError(f"{rows.where}: the projection head scores one similarity; it "
                            f"learns regression or two classes, not {len(self.labels_.classes)}")
        info: dict[str, Any] = {"rows": len(rows)}
        self.model_: Any = None
        self.calibration_: Any = None
        self.networks_: list[PairNetwork] = []
        train, y_train = rows, targets
        if self.symmetric:  # both orders are examples of the same label
            train, y_train = rows.concat(rows.swapped()), np.concatenate([targets, targets])
        kind = self.head_kind_
        if kind == "cosine":
            self._fit_calibration(self.inputs_.cosines(store, train)[1], y_train)
            if self.inputs_.side is not None:  # nothing to learn but the calibration
                self.inputs_.side.fit_transform(store, list(dict.fromkeys(
                    rows.keys_a + rows.keys_b)), rows.where)
        elif kind == "logreg":
            x = self.inputs_.matrix(store, train, fit=True)
            self.model_, fitted = fit_logreg(x, y_train, self.C, self.max_iter, self.seed)
            info.update(fitted)
        elif kind == "ridge":
            x = self.inputs_.matrix(store, train, fit=True)
            self.model_, fitted = fit_ridge(x, y_train, self.C)
            info.update(fitted)
        elif kind == "boosting":
            x = self.inputs_.matrix(store, train, fit=True)
            self.model_, fitted = fit_boosting(x, y_train, self.task, self.seed)
            info.update(fitted)
        else:
            info.update(self._train_networks(store, rows, targets, valid, valid_y, progress))
        info["train_seconds"] = round(time.perf_counter() - start, 3)
        self.fit_info_ = info
        return self

    def _fit_targets(self, labels: pd.Series | None, where: str) -> np.ndarray:
        if labels is None:
            raise HeadError(f"{where} carry no labels")
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

    def _fit_calibration(self, score: np.ndarray, y: np.ndarray) -> None:
        """From one similarity score to classes (a logistic regression on the score: its
        thresholds are chosen on the training pairs) or to values (a least-squares line,
        which leaves Pearson and Spearman as the score's own)."""
        x = np.asarray(score, dtype=np.float64)[:, None]
        if self.task == "classification":
            self.calibration_, _ = fit_logreg(x, y, CALIBRATION_C, 1000, self.seed)
        else:
            slope, intercept = np.polyfit(x[:, 0], y, 1) if np.std(x) > 0 else (0.0, y.mean())
            self.calibration_ = (float(slope), float(intercept))

    def _torch_targets(self, targets: np.ndarray) -> torch.Tensor:
        if self.head_kind_ == "projection":
            return torch.tensor(targets, dtype=torch.float32)
        if self.task == "regression":
            return torch.tensor((targets - self.target_mean_) / self.target_std_,
                                dtype=torch.float32)
        return torch.from_numpy(targets)

    def _network(self) -> PairNetwork:
        dims = self.inputs_.dims
        out_dim = 1 if self.task == "regression" or self.head_kind_ == "projection" \
            else len(self.labels_.classes)
        return build_pair_network(self.pool, self.flat, dims.get("side"), self.fuse_mode,
                                  self.proj_dim, tuple(self.combine), int(dims.get("extra", 0)),
                                  self.head_kind_, out_dim, self.hidden, self.dropout)

    def _train_networks(self, store: Store, rows: PairRows, targets: np.ndarray, valid: Any,
                        valid_y: Any, progress: object | None) -> dict[str, Any]:
        """Train `seeds` networks; early stopping on `valid`, else on a held-out part of the
        training pairs (held out before both orders are taken), else none."""
        fit_idx, held = np.arange(len(rows)), np.empty(0, dtype=np.int64)
        val_rows = None
        if valid is not None:
            val_rows = self._rows(store, valid, valid_y, need_labels=True)
        elif self.valid_fraction > 0 and len(rows) >= 10:
            fit_idx, held = holdout(targets if self.task == "classification" else None,
                                    len(rows), self.valid_fraction, self.seed)
            val_rows = rows.take(held) if len(held) else None
        train, y = rows.take(fit_idx), targets[fit_idx]
        if self.symmetric:
            train, y = train.concat(train.swapped()), np.concatenate([y, y])
        x = self.inputs_.batches(store, train, fit=True)
        yt = self._torch_targets(y)
        val = None
        if val_rows is not None:
            vy = targets[held] if valid is None else self._targets(val_rows)
            val = (self.inputs_.batches(store, val_rows), self._torch_targets(vy))
        projection = self.head_kind_ == "projection"
        best, ran = [], []
        for member in range(self.seeds):
            seed = self.seed + member
            torch.manual_seed(seed)
            net = self._network()
            opts = TrainOptions(
                epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay,
                batch_size=self.batch_size, patience=self.patience,
                label_smoothing=self.label_smoothing if self.task == "classification" and
                not projection else 0.0, seed=seed,
                loss=cosent_loss(self.cosent_scale) if projection else None,
                score=rank_score if projection else None)
            task = "regression" if projection else self.task
            with torch_threads(pick_threads(len(x) * x.width)):
                result = train_network(net, task, x, yt, val, opts, progress)
            net.eval()
            self.networks_.append(net)
            best.append(result.best_epoch)
            ran.append(result.epochs_run)
        if projection:  # one score per pair: calibrated on every training pair
            self._fit_calibration(self._net_scores(self.inputs_.batches(store, rows)),
                                  targets)
        return {"best_epoch": best[0] if len(best) == 1 else best,
                "epochs_run": ran[0] if len(ran) == 1 else ran}

    def _targets(self, rows: PairRows, allow_unseen: bool = False) -> np.ndarray:
        if rows.labels is None:
            raise HeadError(f"{rows.where} carry no labels")
        if self.task == "regression":
            return regression_targets(rows.labels, self.label_col or "label", rows.where)
        return self.labels_.encode(rows.labels, rows.where, allow_unseen)

    def _net_scores(self, x: PairBatches) -> np.ndarray:
        with torch.inference_mode(), torch_threads(pick_threads(len(x) * x.width)):
            outs = [forward_all(net, x).double()[:, 0] for net in self.networks_]
        return torch.stack(outs).mean(0).numpy()

    # -- predict ------------------------------------------------------------------------------
    def _one_order(self, store: Store, rows: PairRows) -> np.ndarray:
        kind, inputs = self.head_kind_, self.inputs_
        if kind in ("cosine", "projection"):
            score = inputs.cosines(store, rows)[1] if kind == "cosine" else \
                self._net_scores(inputs.batches(store, rows))
            if self.task == "classification":
                return self.calibration_.predict_proba(np.asarray(score, np.float64)[:, None])
            slope, intercept = self.calibration_
            return slope * np.asarray(score, dtype=np.float64) + intercept
        if kind == "logreg":
            return self.model_.predict_proba(inputs.matrix(store, rows))
        if kind == "ridge":
            return self.model_.predict(inputs.matrix(store, rows)).astype(np.float64)
        if kind == "boosting":
            return self.model_.predict(inputs.matrix(store, rows))
        x = inputs.batches(store, rows)
        with torch.inference_mode(), torch_threads(pick_threads(len(x) * x.width)):
            outs = [forward_all(net, x).double() for net in self.networks_]
        if self.task == "regression":
            out = torch.stack([o[:, 0] for o in outs]).mean(0)
            return out.numpy() * self.target_std_ + self.target_mean_
        return torch.stack([torch.softmax(o, dim=1) for o in outs]).mean(0).numpy()

    def _output(self, store: Store, data: Any) -> np.ndarray:
        """Class probabilities [n, classes], or predictions [n]; with `symmetric`, the average
        of both orders."""
        self.check_fitted()
        rows = self._rows(store, data, None, need_labels=False)
        inputs = self._bound(store, rows)
        out = self._one_order(store, rows)
        if self.symmetric:
            if inputs.cross is not None and rows.texts is not None:
                self._encode_pairs(store, rows.swapped(),
                                   inputs.cross.layout.encoder_fingerprint.get("encoder", {}),
                                   inputs.cross.layout.features)
            out = (out + self._one_order(store, rows.swapped())) / 2
        return out

    def truth_and_output(self, store: Store, data: Any, y: Any, allow_unseen: bool = False
                         ) -> tuple[np.ndarray, np.ndarray]:
        rows = self._rows(store, data, y, need_labels=True)
        return self._targets(rows, allow_unseen), self._output(store, data)

    def class_metrics(self, truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
        """For two classes, the F1 of the positive class (the second in sorted order: 1 for
        0/1 labels)."""
        if len(self.labels_.classes) != 2:
            return {}
        return {"positive_f1": positive_f1(truth, pred)}

    # -- fitted state -------------------------------------------------------------------------
    @property
    def layouts_(self) -> list[InputLayout]:
        """What the head reads from a store: each text's layout, the cross source's."""
        self.check_fitted()
        return self.inputs_.layouts

    @property
    def encoder_id_(self) -> str:
        self.check_fitted()
        return self.inputs_.layouts[0].encoder_id

    @property
    def layers_(self) -> list[int]:
        self.check_fitted()
        return self.inputs_.layouts[0].layers

    # -- save and load ------------------------------------------------------------------------
    def saved_config(self) -> dict[str, Any]:
        return {**super().saved_config(), "head": self.head_kind_}

    def fitted_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Normaliser statistics, the linear model, calibration or network weights (`net.`,
        `net1.`, ...); the layouts read, input widths, label map or target scale."""
        tensors = self.inputs_.state()
        if self.head_kind_ == "logreg":
            tensors.update(logreg_state(self.model_))
        if self.head_kind_ == "ridge":
            tensors.update(ridge_state(self.model_))
        if self.head_kind_ == "boosting":
            tensors.update(self.model_.state())
        calibration: Any = None
        if self.calibration_ is not None and self.task == "classification":
            tensors.update({f"calibration.{k}": v
                            for k, v in logreg_state(self.calibration_).items()})
        elif self.calibration_ is not None:
            calibration = list(self.calibration_)
        tensors.update(networks_state(self.networks_))
        doc: dict[str, Any] = {"pair": {"columns": list(self.text_columns_),
                                        "layouts": self.inputs_.layouts_json(),
                                        "calibration": calibration},
                               "input_dims": self.inputs_.dims}
        layout = self.inputs_.layouts[0]  # what `heads list` and older readers look at
        doc.update(layout.to_json())
        if self.task == "classification":
            doc["labels"] = self.labels_.classes
        else:
            doc["target"] = {"mean": self.target_mean_, "std": self.target_std_}
        return tensors, doc

    @classmethod
    def restore(cls, doc: dict[str, Any], tensors: dict[str, np.ndarray], name: str,
                store: Store | str | Path) -> PairEstimator:
        head = cls.from_config(doc["config"])
        head.store = store
        head.head_kind_ = head.head_kind
        pair = doc["pair"]
        head.text_columns_ = tuple(pair["columns"])
        flat = head.flat
        parts = []
        for key in ("side", "cross"):
            ldoc = pair["layouts"].get(key)
            if ldoc is None:
                parts.append(None)
                continue
            layout = InputLayout.from_json(ldoc)
            is_side = key == "side"
            parts.append(HeadInputs(layout, head.pool, flat if is_side else True,
                                    (flat and head.fuse_mode == "concat") if is_side else True,
                                    head.normalize))
        head.inputs_ = PairInputs(head.source, tuple(head.combine), parts[0], parts[1]
                                  ).load_state(pair["layouts"], doc["input_dims"], tensors)
        head.metrics_ = doc.get("metrics", {})
        if head.task == "classification":
            head.labels_ = LabelMap(list(doc["labels"]))
            head.classes_ = np.array(head.labels_.classes, dtype=object)
        else:
            head.target_mean_ = float(doc["target"]["mean"])
            head.target_std_ = float(doc["target"]["std"])
        fit_info = doc.get("fit", {})
        head.model_, head.calibration_, head.networks_ = None, None, []
        if head.head_kind_ == "logreg":
            head.model_ = logreg_from_state(tensors, float(fit_info.get("C", 1.0)))
        if head.head_kind_ == "ridge":
            head.model_ = ridge_from_state(tensors, float(fit_info.get("alpha", 1.0)))
        if head.head_kind_ == "boosting":
            head.model_ = BoostedTrees.from_state(tensors, head.task)
        if head.task == "classification" and "calibration.logreg.coef" in tensors:
            mine = {k[len("calibration."):]: v for k, v in tensors.items()
                    if k.startswith("calibration.")}
            head.calibration_ = logreg_from_state(mine, CALIBRATION_C)
        elif pair.get("calibration") is not None:
            head.calibration_ = tuple(float(v) for v in pair["calibration"])
        torch_kind = HEAD_KINDS[head.head_kind_].trained_by == "torch"
        head.networks_.extend(networks_from_state(
            tensors, head.seeds if torch_kind else 0, head._network, name))
        head.fit_info_ = fit_info
        return head


@saved_as("pair", "classification")
class PairClassifier(ClassifierMixin, PairEstimator):
    """A classifier of pairs of texts (paraphrase, entailment, duplicate questions)."""

    task = "classification"

    def predict_proba(self, X: Any, *args: Any) -> np.ndarray:
        """[pairs, classes] probabilities; column i is `classes_[i]`."""
        self.check_fitted()
        store, data = self.store_data(X, args)
        return self._output(store, data)

    def predict(self, X: Any, *args: Any) -> np.ndarray:
        self.check_fitted()
        return np.array(self.labels_.decode(self.predict_proba(X, *args).argmax(axis=1)),
                        dtype=object)


@saved_as("pair", "regression")
class PairRegressor(RegressorMixin, PairEstimator):
    """A regressor of pairs of texts (semantic similarity scores)."""

    task = "regression"

    def predict(self, X: Any, *args: Any) -> np.ndarray:
        self.check_fitted()
        store, data = self.store_data(X, args)
        return self._output(store, data)


def make_pair_head(task: str = "classification", **params: Any) -> PairEstimator:
    """A pair classifier or regressor by task name."""
    return (PairRegressor if task == "regression" else PairClassifier)(**params)
