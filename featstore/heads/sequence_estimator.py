"""`SequenceClassifier`: a scikit-learn-style classifier of sequences of stored texts (a user's
events, a conversation's messages, a document's paragraphs), one label per sequence.

Each row of the data is one message: its vector comes from the store through the usual pooling
and fusion (`pool`, `layers`, `fuse`), normalised with statistics of the training rows. Rows are
grouped into sequences by `group_by`, ordered by `order_by` (else row order), with the time since
the previous event from `time_col` if given. `seq_head` is the model over a sequence:

- `transformer`: a small transformer with a learned [CLS] (see `sequence_networks`);
- `gru`: a bidirectional GRU over the packed sequence;
- `mean`: mean and max of the message vectors into logistic regression (C by inner CV);
- `last`, `mean-last`: the last message (and the mean) into logistic regression;
- `auto`: the best of `candidates` by stratified inner cross-validation on the training
  sequences only, refitted on all of them.

    >>> clf = SequenceClassifier(store="featstore", group_by="conversation", order_by="turn")
    >>> clf.fit("comments").predict_table("comments").head()

`predict` and `predict_proba` return one row per sequence, in order of each group's first row;
`predict_table` names the groups.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import StratifiedKFold

from featstore.heads.artifacts import restore_head, write_head
from featstore.heads.choices import AUTO_CANDIDATES, SEQ_HEADS
from featstore.heads.errors import HeadError
from featstore.heads.estimator import HeadNotFittedError
from featstore.heads.inputs import HeadInputs, InputLayout
from featstore.heads.labels import LabelMap, check_classes, label_column
from featstore.heads.logreg import fit_logreg, logreg_from_state, logreg_state
from featstore.heads.normalizer import check_normalization
from featstore.heads.poolings import check_pooling, is_trainable
from featstore.heads.rows import store_and_data, text_keys
from featstore.heads.sequence_inputs import SequenceBatches, summarize_sequences
from featstore.heads.sequence_networks import SequenceNetwork, build_sequence_network
from featstore.heads.sequences import Sequences, group_rows, labels_from_table
from featstore.heads.splits import holdout
from featstore.heads.training import TrainOptions, forward_all, torch_threads, train_network
from featstore.store import KEY_COLUMN, FeatstoreError, Store

_SUMMARY_OF = {"mean": "mean-max", "last": "last", "mean-last": "mean-last"}
KIND = "sequence"


class SequenceClassifier(ClassifierMixin, BaseEstimator):
    """A classifier of sequences of stored texts; see the module docstring."""

    def __init__(
        self,
        seq_head: str = "auto",
        group_by: str = "group",
        order_by: str | None = None,
        time_col: str | None = None,
        *,
        store: str | Path | Store | None = None,
        label_col: str | None = None,
        pool: str = "mean",
        layers: Sequence[int] | None = None,
        of: str | None = None,
        fuse: Sequence[str] = (),
        normalize: str = "standard",
        encoder: str | None = None,
        width: int = 64,
        depth: int = 1,
        n_heads: int = 4,
        classifier: str = "linear",
        dropout: float = 0.3,
        epochs: int = 40,
        lr: float = 2e-3,
        weight_decay: float = 0.05,
        batch_size: int = 64,
        patience: int = 6,
        valid_fraction: float = 0.15,
        max_len: int = 64,
        C: float | None = None,  # noqa: N803  scikit-learn's name for it
        max_iter: int = 200,
        inner_cv: int = 3,
        candidates: Sequence[str] = AUTO_CANDIDATES,
        seed: int = 0,
    ) -> None:
        self.seq_head = seq_head
        self.group_by = group_by
        self.order_by = order_by
        self.time_col = time_col
        self.store = store
        self.label_col = label_col
        self.pool = pool
        self.layers = layers
        self.of = of
        self.fuse = fuse
        self.normalize = normalize
        self.encoder = encoder
        self.width = width
        self.depth = depth
        self.n_heads = n_heads
        self.classifier = classifier
        self.dropout = dropout
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.patience = patience
        self.valid_fraction = valid_fraction
        self.max_len = max_len
        self.C = C
        self.max_iter = max_iter
        self.inner_cv = inner_cv
        self.candidates = candidates
        self.seed = seed

    # -- parameters ---------------------------------------------------------------------------
    def validate_params(self) -> None:
        """One-line errors for parameters that cannot work, before any data is read."""
        if self.seq_head not in SEQ_HEADS:
            raise HeadError(f"unknown --seq-head {self.seq_head!r}; choose one of: "
                            f"{', '.join(SEQ_HEADS)}")
        bad = [c for c in self.candidates if c not in SEQ_HEADS or c == "auto"]
        if bad or not self.candidates:
            raise HeadError(f"auto's candidates must be among "
                            f"{', '.join(SEQ_HEADS[:-1])}, got {list(self.candidates)}")
        check_pooling(self.pool, self.of)
        if is_trainable(self.pool):
            raise HeadError(f"--pool {self.pool} is trained with a per-text head; sequence heads "
                            "read one fixed vector per message (cls, mean, mean-max, concat...)")
        check_normalization(self.normalize)
        if self.classifier not in ("linear", "mlp"):
            raise HeadError(f"unknown classifier {self.classifier!r}; choose linear or mlp")
        for name, value, low in (("width", self.width, 1), ("depth", self.depth, 1),
                                 ("n_heads", self.n_heads, 1), ("epochs", self.epochs, 1),
                                 ("batch_size", self.batch_size, 1), ("max_len", self.max_len, 1),
                                 ("inner_cv", self.inner_cv, 2), ("patience", self.patience, 1)):
            if int(value) < low:
                raise HeadError(f"{name} must be at least {low}, got {value}")
        if self.width % self.n_heads:
            raise HeadError(f"width {self.width} must be a multiple of n_heads {self.n_heads}")
        for name, value in (("dropout", self.dropout), ("valid_fraction", self.valid_fraction)):
            if not 0 <= value < 1:
                raise HeadError(f"{name} must be at least 0 and below 1, got {value}")
        if not self.lr > 0 or not self.weight_decay >= 0:
            raise HeadError("lr must be positive and weight_decay 0 or more")
        if self.C is not None and self.C <= 0:
            raise HeadError(f"C must be positive, got {self.C}")

    # -- data ---------------------------------------------------------------------------------
    def _split(self, X: Any, rest: tuple) -> tuple[Store, Any, tuple]:
        return store_and_data(X, rest, self.store)

    def _table(self, store: Store, data: Any) -> tuple[pd.DataFrame, str]:
        """The rows (one message each) with a key column, and a name for messages."""
        if isinstance(data, str):
            return store.dataset(data), f"dataset {data!r}"
        if not isinstance(data, pd.DataFrame):
            raise HeadError("sequence data must be a dataset name or a DataFrame of rows with "
                            f"a {self.group_by!r} column and a 'text' (or {KEY_COLUMN!r}) column")
        df = data.reset_index(drop=True)
        if KEY_COLUMN not in df.columns:
            if "text" not in df.columns:
                raise HeadError(f"rows need a {KEY_COLUMN!r} or 'text' column "
                                f"(columns: {', '.join(map(str, df.columns))})")
            df = df.assign(**{KEY_COLUMN: text_keys(df["text"].tolist(), "the given rows")})
        return df, "the given rows"

    def sequences(self, store: Store, data: Any, y: Any = None, need_labels: bool = True
                  ) -> tuple[pd.DataFrame, Sequences, str]:
        """The rows, their sequences (labelled when `need_labels`) and a name for messages."""
        df, where = self._table(store, data)
        label_col = None
        if need_labels and y is None:
            label_col = label_column(df, self.label_col, where)
        seqs = group_rows(df, self.group_by, self.order_by, self.time_col, label_col, where)
        if need_labels and y is not None:
            seqs.labels = labels_from_table(self._label_table(y), seqs.groups, self.group_by,
                                            "label", "the given labels")
        return df, seqs, where

    def _label_table(self, y: Any) -> pd.DataFrame:
        """Labels keyed by group: a DataFrame (group and label columns), a dict or a Series
        indexed by group."""
        if isinstance(y, pd.DataFrame):
            col = label_column(y, self.label_col, "the given labels")
            return y.rename(columns={col: "label"})[[self.group_by, "label"]]
        if isinstance(y, dict | pd.Series):
            s = pd.Series(y)
            return pd.DataFrame({self.group_by: list(s.index), "label": s.tolist()})
        raise HeadError("labels for sequences are keyed by group: pass a dict, a Series indexed "
                        "by group, or a DataFrame with the group and label columns")

    def _layout(self, store: Store) -> InputLayout:
        return InputLayout.resolve(store, self.pool, self.of, self.layers, None, self.fuse,
                                   self.encoder)

    def _featurize_texts(self, store: Store, df: pd.DataFrame, layout: InputLayout) -> None:
        if "text" not in df.columns:
            return
        try:
            store.featurize_missing(df["text"].astype(str).tolist(), layout.encoder_fingerprint,
                                    layout.features)
        except FeatstoreError as exc:
            raise HeadError(f"some of the given texts are not featurized, and encoding them "
                            f"failed: {exc}") from None

    def check_stored(self, store: Store, layout: InputLayout, df: pd.DataFrame, seqs: Sequences,
                     where: str) -> None:
        """Every message has its vectors, else one line naming a group that lacks them."""
        keys = df[KEY_COLUMN].astype(str).tolist()
        missing = np.zeros(len(keys), dtype=bool)
        for enc, feats in [(layout.encoder_id, layout.features),
                           *((s.encoder_id, [s.feature]) for s in layout.sources)]:
            if set(feats) <= set(store.encoder_entry(enc).feature_shapes):
                missing |= ~store.has(enc, keys, feats)
        if missing.any():
            for g, r in zip(seqs.groups, seqs.rows, strict=True):
                if missing[r].any():
                    model = layout.encoder_fingerprint.get("model", layout.encoder_id)
                    lack = int(missing[r].sum())
                    what = "no stored vectors" if lack == len(r) else \
                        f"{lack} of {len(r)} messages without stored vectors"
                    raise HeadError(f"{where}: group {g!r} has {what} (encoder {model}); "
                                    "run featurize on these rows first")
        layout.check(store, keys, where)

    def _matrix(self, store: Store, df: pd.DataFrame, where: str, fit: bool) -> np.ndarray:
        keys = df[KEY_COLUMN].astype(str).tolist()
        if fit:
            return self.inputs_.fit(store, keys, where).matrix()
        return self.inputs_.matrix(store, keys, where)

    # -- fit ----------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, *args: Any, progress: Any = None
            ) -> SequenceClassifier:
        """Fit on the rows `X` (one message each); labels from the label column (constant per
        group) or `y` keyed by group."""
        store, data, rest = self._split(X, (y, *args))
        y = rest[0] if rest else None
        self.validate_params()
        start = time.perf_counter()
        df, seqs, where = self.sequences(store, data, y)
        layout = self._layout(store)
        self._featurize_texts(store, df, layout)
        self.check_stored(store, layout, df, seqs, where)
        self.inputs_ = HeadInputs(layout, self.pool, True, True, self.normalize)
        matrix = self._matrix(store, df, where, fit=True)
        assert seqs.labels is not None
        self.labels_ = LabelMap.fit(seqs.labels)
        self.classes_ = np.array(self.labels_.classes, dtype=object)
        targets = self.labels_.encode(seqs.labels, where)
        check_classes(targets, self.labels_, where)
        self.fit_info_: dict[str, Any] = {"sequences": len(seqs), "rows": len(df),
                                          "mean_length": round(float(seqs.lengths.mean()), 2)}
        kind = self.seq_head
        if kind == "auto":
            kind, scores = self._choose(matrix, seqs, targets)
            self.fit_info_["inner_cv"] = scores
        self.kind_ = kind
        self.fit_info_["seq_head"] = kind
        self.model_, self.network_, info = self._fit_kind(kind, matrix, seqs, targets)
        self.fit_info_.update(info)
        self.fit_info_["train_seconds"] = round(time.perf_counter() - start, 3)
        if progress is not None:
            progress.update(1)
        return self

    def _fit_kind(self, kind: str, matrix: np.ndarray, seqs: Sequences, y: np.ndarray
                  ) -> tuple[Any, SequenceNetwork | None, dict[str, Any]]:
        if kind in _SUMMARY_OF:
            x = summarize_sequences(_SUMMARY_OF[kind], matrix, seqs.rows)
            model, info = fit_logreg(x, y, self.C, self.max_iter, self.seed)
            return model, None, info
        batches = SequenceBatches(matrix, seqs.rows, seqs.times, self.max_len)
        yt = torch.from_numpy(y)
        train_x, train_y, valid = batches, yt, None
        if self.valid_fraction > 0 and len(y) >= 10:
            fit_idx, held = holdout(y, len(y), self.valid_fraction, self.seed)
            if len(held):
                valid = (batches.subset(held), yt[held])
                train_x, train_y = batches.subset(fit_idx), yt[fit_idx]
        torch.manual_seed(self.seed)
        net = self._network(kind, matrix.shape[1])
        opts = TrainOptions(epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay,
                            batch_size=self.batch_size, patience=self.patience, seed=self.seed)
        with torch_threads(1):
            result = train_network(net, "classification", train_x, train_y, valid, opts)
        net.eval()
        return None, net, {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run}

    def _network(self, kind: str, in_dim: int) -> SequenceNetwork:
        return build_sequence_network(kind, in_dim, len(self.labels_.classes), self.width,
                                      self.depth, self.n_heads, self.max_len,
                                      self.time_col is not None, self.dropout, self.classifier)

    def _choose(self, matrix: np.ndarray, seqs: Sequences, y: np.ndarray
                ) -> tuple[str, dict[str, float]]:
        """The candidate with the best stratified inner-CV accuracy over the training
        sequences (ties to the earlier, simpler candidate)."""
        counts = np.bincount(y)
        folds = min(self.inner_cv, int(counts[counts > 0].min()))
        if folds < 2:
            return self.candidates[0], {}
        skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.seed)
        splits = list(skf.split(np.zeros(len(y)), y))
        scores: dict[str, float] = {}
        for kind in self.candidates:
            accs = []
            for tr, te in splits:
                model, net, _ = self._fit_kind(kind, matrix, seqs.subset(tr), y[tr])
                proba = self._proba(kind, model, net, matrix, seqs.subset(te))
                accs.append(float((proba.argmax(1) == y[te]).mean()))
            scores[kind] = round(float(np.mean(accs)), 6)
        best = max(self.candidates, key=lambda k: scores[k])
        return best, scores

    # -- predict ------------------------------------------------------------------------------
    def _proba(self, kind: str, model: Any, net: SequenceNetwork | None, matrix: np.ndarray,
               seqs: Sequences) -> np.ndarray:
        if kind in _SUMMARY_OF:
            return model.predict_proba(summarize_sequences(_SUMMARY_OF[kind], matrix, seqs.rows))
        assert net is not None
        batches = SequenceBatches(matrix, seqs.rows, seqs.times, self.max_len)
        with torch_threads(1):
            out = forward_all(net, batches, batch_size=256)
        return torch.softmax(out.double(), dim=1).numpy()

    def check_fitted(self) -> None:
        if not hasattr(self, "kind_"):
            raise HeadNotFittedError("this sequence head is not fitted yet; call fit first")

    def _predict_parts(self, X: Any, args: tuple) -> tuple[Sequences, np.ndarray]:
        self.check_fitted()
        store, data, _ = self._split(X, args)
        df, seqs, where = self.sequences(store, data, need_labels=False)
        layout = self.inputs_.layout.bind(store)
        self._featurize_texts(store, df, layout)
        self.check_stored(store, layout, df, seqs, where)
        matrix = self._matrix(store, df, where, fit=False)
        return seqs, self._proba(self.kind_, self.model_, self.network_, matrix, seqs)

    def predict_proba(self, X: Any, *args: Any) -> np.ndarray:
        """[sequences, classes] probabilities, sequences in order of their first row."""
        return self._predict_parts(X, args)[1]

    def predict(self, X: Any, *args: Any) -> np.ndarray:
        return np.array(self.labels_.decode(self.predict_proba(X, *args).argmax(1)),
                        dtype=object)

    def predict_table(self, X: Any, *args: Any) -> pd.DataFrame:
        """One row per sequence: the group value, its length, the prediction and p_CLASS."""
        seqs, proba = self._predict_parts(X, args)
        out = pd.DataFrame({self.group_by: seqs.groups, "messages": seqs.lengths})
        out["prediction"] = self.labels_.decode(proba.argmax(1))
        for i, c in enumerate(self.labels_.classes):
            out[f"p_{c}"] = proba[:, i].round(6)
        return out

    def evaluate(self, X: Any, y: Any = None, *args: Any) -> dict[str, float]:
        """Accuracy and macro-F1 over the labelled sequences of `X`."""
        from featstore.heads.metrics import classification_scores

        self.check_fitted()
        store, data, rest = self._split(X, (y, *args))
        y = rest[0] if rest else None
        _, seqs, where = self.sequences(store, data, y)
        assert seqs.labels is not None
        truth = self.labels_.encode(seqs.labels, where)
        proba = self.predict_proba(store, data)
        return classification_scores(truth, proba.argmax(1))

    def score(self, X: Any, y: Any = None, *args: Any, sample_weight: Any = None) -> float:
        if sample_weight is not None:
            raise HeadError("score takes no sample_weight")
        return self.evaluate(X, y, *args)["accuracy"]

    # -- save and load ------------------------------------------------------------------------
    def saved_config(self) -> dict[str, Any]:
        cfg = self.get_params()
        cfg.pop("store")
        cfg["layers"] = list(cfg["layers"]) if cfg["layers"] is not None else None
        cfg["fuse"] = list(cfg["fuse"])
        cfg["candidates"] = list(cfg["candidates"])
        return cfg

    def save(self, store: Store | str | Path, name: str, metrics: dict | None = None,
             extra: dict | None = None, overwrite: bool = False) -> Path:
        """Write this head to STORE/heads/NAME (safetensors + JSON); `load` reads it back. A head
        already saved under NAME is replaced only with `overwrite`."""
        self.check_fitted()
        tensors = self.inputs_.state()
        if self.model_ is not None:
            tensors.update(logreg_state(self.model_))
        if self.network_ is not None:
            tensors.update({f"net.{k}": v.detach().cpu().numpy().copy()
                            for k, v in self.network_.state_dict().items()})
        doc: dict[str, Any] = {"kind": KIND, "config": self.saved_config(),
                               "seq_head": self.kind_, **self.inputs_.layout.to_json(),
                               "input_dims": self.inputs_.dims, "fit": self.fit_info_,
                               "metrics": metrics or {}, "labels": self.labels_.classes}
        doc.update(extra or {})
        return write_head(store, name, tensors, doc, overwrite=overwrite)

    @classmethod
    def load(cls, store: Store | str | Path, name: str) -> SequenceClassifier:
        """A fitted sequence head read back from STORE/heads/NAME."""
        return restore_head(store, name,
                            lambda doc, tensors: cls._restore(doc, tensors, name, store))

    @classmethod
    def _restore(cls, doc: dict[str, Any], tensors: dict[str, np.ndarray], name: str,
                 store: Store | str | Path) -> SequenceClassifier:
        if doc.get("kind") != KIND:
            raise HeadError(f"head {name} is a per-text head, not a sequence head")
        cfg = dict(doc["config"])
        names = set(cls().get_params())
        cfg["fuse"] = tuple(cfg.get("fuse", ()))
        cfg["candidates"] = tuple(cfg.get("candidates", AUTO_CANDIDATES))
        head = cls(**{k: v for k, v in cfg.items() if k in names})
        head.store = store
        head.inputs_ = HeadInputs(InputLayout.from_json(doc), head.pool, True, True,
                                  head.normalize).load_state(doc["input_dims"], tensors)
        head.labels_ = LabelMap(list(doc["labels"]))
        head.classes_ = np.array(head.labels_.classes, dtype=object)
        head.kind_ = str(doc["seq_head"])
        head.fit_info_ = doc.get("fit", {})
        head.metrics_ = doc.get("metrics", {})
        head.model_, head.network_ = None, None
        if head.kind_ in _SUMMARY_OF:
            head.model_ = logreg_from_state(tensors, float(head.fit_info_.get("C", 1.0)))
            return head
        dims = head.inputs_.dims
        net = head._network(head.kind_, int(dims["enc"]) + sum(int(d) for d in dims["sources"]))
        state = {k[4:]: torch.from_numpy(v.copy()) for k, v in tensors.items()
                 if k.startswith("net.")}
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise HeadError(f"head {name}: weights do not fit its configuration "
                            f"({str(exc).splitlines()[0]})") from None
        head.network_ = net.eval()
        return head


def is_sequence_head(doc: dict[str, Any]) -> bool:
    """Whether a head.json describes a sequence head."""
    return doc.get("kind") == KIND
