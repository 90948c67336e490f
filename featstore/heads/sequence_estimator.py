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
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from sklearn.base import ClassifierMixin

from featstore.heads.base import StoreHead, saved_as
from featstore.heads.errors import HeadError, ParamError
from featstore.heads.inputs import HeadInputs, InputLayout, featurize_for_layouts
from featstore.heads.kinds import check_sequence_pooling
from featstore.heads.labels import LabelMap, check_classes, label_column
from featstore.heads.logreg import fit_logreg, logreg_from_state, logreg_state
from featstore.heads.names import sequence_head_what
from featstore.heads.params import SEQUENCE_HEAD, ParamSet
from featstore.heads.rows import text_keys
from featstore.heads.sequence_inputs import SequenceBatches, summarize_sequences
from featstore.heads.sequence_networks import SequenceNetwork, build_sequence_network
from featstore.heads.sequences import Sequences, group_rows, labels_from_table, labels_of
from featstore.heads.splits import holdout, inner_folds
from featstore.heads.training import TrainOptions, forward_all, torch_threads, train_network
from featstore.store import KEY_COLUMN, Store

_SUMMARY_OF = {"mean": "mean-max", "last": "last", "mean-last": "mean-last"}
ROW_LABELS = "_label"  # the column per-row labels (`y` one per row) are held in


@saved_as("sequence")
class SequenceClassifier(ClassifierMixin, StoreHead):
    """A classifier of sequences of stored texts; see the module docstring. Its parameters are
    `SEQUENCE_HEAD`'s (featstore.heads.params)."""

    params: ClassVar[ParamSet] = SEQUENCE_HEAD

    def check_combination(self) -> None:
        if not self.candidates:
            raise ParamError("{candidates} names no sequence head for auto to choose from")
        check_sequence_pooling(self.pool)
        if self.width % self.n_heads:
            raise ParamError(f"{{width}} {self.width} must be a multiple of {{n_heads}} "
                             f"{self.n_heads}")

    def default_name(self) -> str:
        return sequence_head_what(self.get_params(deep=False))

    @property
    def encoder_id_(self) -> str:
        """The encoder's id in the store the head was fitted (or loaded) in."""
        self.check_fitted()
        return self.inputs_.layout.encoder_id

    @property
    def layouts_(self) -> list[InputLayout]:
        """What the head reads from a store."""
        self.check_fitted()
        return [self.inputs_.layout]

    # -- data ---------------------------------------------------------------------------------
    def _table(self, store: Store, data: Any, groups: Any = None) -> tuple[pd.DataFrame, str]:
        """The rows (one message each) with a key column, and a name for messages; `groups`
        (one value per row) gives or replaces the group column, so plain texts can be rows."""
        if isinstance(data, str):
            df, where = store.dataset(data), f"dataset {data!r}"
        elif isinstance(data, pd.DataFrame):
            df, where = data.reset_index(drop=True), "the given rows"
        elif groups is not None and not isinstance(data, dict):
            df, where = pd.DataFrame({"text": list(data)}), "the given texts"
        else:
            raise HeadError("sequence data must be a dataset name or a DataFrame of rows with "
                            f"a {self.group_by!r} column and a 'text' (or {KEY_COLUMN!r}) "
                            "column, or texts with groups=")
        if groups is not None:
            values = list(groups)
            if len(values) != len(df):
                raise HeadError(f"{where} has {len(df)} rows but groups= gives {len(values)} "
                                "group values")
            df = df.assign(**{self.group_by: values})
        if KEY_COLUMN not in df.columns:
            if "text" not in df.columns:
                raise HeadError(f"rows need a {KEY_COLUMN!r} or 'text' column "
                                f"(columns: {', '.join(map(str, df.columns))})")
            df = df.assign(**{KEY_COLUMN: text_keys(df["text"].tolist(), where)})
        return df, where

    def _per_row(self, y: Any, df: pd.DataFrame) -> bool:
        """Whether labels `y` are one per row (a list or array, as scikit-learn's splitters
        hand them over) rather than keyed by group (a dict, a DataFrame, a Series indexed by
        group)."""
        if isinstance(y, dict | pd.DataFrame):
            return False
        if isinstance(y, pd.Series):
            groups = set(df[self.group_by].tolist()) if self.group_by in df.columns else set()
            return len(y) == len(df) and not set(y.index.tolist()) <= groups
        return True

    def sequences(self, store: Store, data: Any, y: Any = None, need_labels: bool = True,
                  groups: Any = None) -> tuple[pd.DataFrame, Sequences, str]:
        """The rows, their sequences (labelled when `need_labels`) and a name for messages.
        Labels come from the label column, or `y`: one per row (constant within a group) or
        keyed by group."""
        df, where = self._table(store, data, groups)
        label_col = None
        if y is not None and self._per_row(y, df):
            values = list(y)
            if len(values) != len(df):
                raise HeadError(f"{where} has {len(df)} rows but {len(values)} labels")
            df, label_col, y = df.assign(**{ROW_LABELS: values}), ROW_LABELS, None
        elif need_labels and y is None:
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
        """Messages the store lacks are encoded with every source the head reads."""
        if "text" in df.columns:
            featurize_for_layouts(store, df["text"].astype(str).tolist(), [layout])

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
            return self.inputs_.fit_transform(store, keys, where).matrix()
        return self.inputs_.matrix(store, keys, where)

    # -- fit ----------------------------------------------------------------------------------
    def check_inputs(self, store: Store, data: Any, where: str | None = None) -> None:
        """Fail fast, before any training, if these parameters or the store cannot serve
        `data`'s sequences; sets nothing."""
        self.validate_params()
        df, seqs, rows_where = self.sequences(store, data, need_labels=False)
        self.check_stored(store, self._layout(store), df, seqs, where or rows_where)

    def fit(self, X: Any, y: Any = None, *args: Any, groups: Any = None, progress: Any = None
            ) -> SequenceClassifier:
        """Fit on the rows `X` (one message each: a dataset, a DataFrame, or texts with
        `groups=`); labels from the label column (constant per group), or `y`: one per row,
        as scikit-learn's `GroupKFold` and `cross_val_score` hand them over, or keyed by
        group. `groups` (one value per row) gives the group column."""
        store, data, y = self.store_data_y(X, y, args)
        self.validate_params()
        start = time.perf_counter()
        df, seqs, where = self.sequences(store, data, y, groups=groups)
        layout = self._layout(store)
        self._featurize_texts(store, df, layout)
        self.check_stored(store, layout, df, seqs, where)
        self.inputs_ = HeadInputs(layout, self.pool, True, True, self.normalize)
        matrix = self._matrix(store, df, where, fit=True)
        labels = labels_of(seqs, where)
        self.labels_ = LabelMap.fit(labels)
        self.classes_ = np.array(self.labels_.classes, dtype=object)
        targets = self.labels_.encode(labels, where)
        check_classes(self.labels_, where)
        info: dict[str, Any] = {"sequences": len(seqs), "rows": len(df),
                                "mean_length": round(float(seqs.lengths.mean()), 2)}
        kind = self.seq_head
        if kind == "auto":
            kind, scores = self._choose(matrix, seqs, targets)
            info["inner_cv"] = scores
        self.kind_ = kind
        info["seq_head"] = kind
        self.model_, self.network_, fitted = self._fit_kind(kind, matrix, seqs, targets)
        info.update(fitted)
        info["train_seconds"] = round(time.perf_counter() - start, 3)
        self.fit_info_ = info
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
        splits = inner_folds(y, len(y), self.inner_cv, self.seed)
        if not splits:
            return self.candidates[0], {}
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
        if net is None:
            raise HeadError(f"a {kind} sequence head has no network (damaged?)")
        batches = SequenceBatches(matrix, seqs.rows, seqs.times, self.max_len)
        with torch_threads(1):
            out = forward_all(net, batches, batch_size=256)
        return torch.softmax(out.double(), dim=1).numpy()

    def _predict_parts(self, X: Any, args: tuple, groups: Any = None
                       ) -> tuple[Sequences, np.ndarray]:
        self.check_fitted()
        store, data = self.store_data(X, args)
        df, seqs, where = self.sequences(store, data, need_labels=False, groups=groups)
        layout = self.inputs_.layout.bind(store)
        self._featurize_texts(store, df, layout)
        self.check_stored(store, layout, df, seqs, where)
        matrix = self._matrix(store, df, where, fit=False)
        return seqs, self._proba(self.kind_, self.model_, self.network_, matrix, seqs)

    def predict_proba(self, X: Any, *args: Any, groups: Any = None) -> np.ndarray:
        """[sequences, classes] probabilities, sequences in order of their first row."""
        return self._predict_parts(X, args, groups)[1]

    def predict(self, X: Any, *args: Any, groups: Any = None) -> np.ndarray:
        """One label per sequence, sequences in order of their first row."""
        self.check_fitted()
        return np.array(self.labels_.decode(self.predict_proba(X, *args, groups=groups
                                                               ).argmax(1)), dtype=object)

    def predict_table(self, X: Any, *args: Any, groups: Any = None) -> pd.DataFrame:
        """One row per sequence: the group value, its length, the prediction and p_CLASS."""
        seqs, proba = self._predict_parts(X, args, groups)
        out = pd.DataFrame({self.group_by: seqs.groups, "messages": seqs.lengths})
        out["prediction"] = self.labels_.decode(proba.argmax(1))
        for i, c in enumerate(self.labels_.classes):
            out[f"p_{c}"] = proba[:, i].round(6)
        return out

    def truth_and_output(self, store: Store, data: Any, y: Any, allow_unseen: bool = False
                         ) -> tuple[np.ndarray, np.ndarray]:
        _, seqs, where = self.sequences(store, data, y)
        truth = self.labels_.encode(labels_of(seqs, where), where, allow_unseen)
        return truth, self.predict_proba(store, data)

    # -- save and load ------------------------------------------------------------------------
    def fitted_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Normaliser statistics and the logistic regression or network weights (`net.`);
        the kind `auto` chose, the layout read, input widths and label map."""
        tensors = self.inputs_.state()
        if self.model_ is not None:
            tensors.update(logreg_state(self.model_))
        if self.network_ is not None:
            tensors.update({f"net.{k}": v.detach().cpu().numpy().copy()
                            for k, v in self.network_.state_dict().items()})
        return tensors, {"seq_head": self.kind_, **self.inputs_.layout.to_json(),
                         "input_dims": self.inputs_.dims, "labels": self.labels_.classes}

    @classmethod
    def restore(cls, doc: dict[str, Any], tensors: dict[str, np.ndarray], name: str,
                store: Store | str | Path) -> SequenceClassifier:
        head = cls.from_config(doc["config"])
        head.store = store
        head.inputs_ = HeadInputs(InputLayout.from_json(doc), head.pool, True, True,
                                  head.normalize).load_state(doc["input_dims"], tensors)
        head.labels_ = LabelMap(list(doc["labels"]))
        head.classes_ = np.array(head.labels_.classes, dtype=object)
        head.kind_ = str(doc["seq_head"])
        head.metrics_ = doc.get("metrics", {})
        head.model_, head.network_ = None, None
        fit_info = doc.get("fit", {})
        if head.kind_ in _SUMMARY_OF:
            head.model_ = logreg_from_state(tensors, float(fit_info.get("C", 1.0)))
        else:
            dims = head.inputs_.dims
            net = head._network(head.kind_,
                                int(dims["enc"]) + sum(int(d) for d in dims["sources"]))
            state = {k[4:]: torch.from_numpy(v.copy()) for k, v in tensors.items()
                     if k.startswith("net.")}
            try:
                net.load_state_dict(state)
            except RuntimeError as exc:
                raise HeadError(f"head {name}: weights do not fit its configuration "
                                f"({str(exc).splitlines()[0]})") from None
            head.network_ = net.eval()
        head.fit_info_ = fit_info
        return head
