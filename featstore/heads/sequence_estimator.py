"""`SequenceClassifier`: a scikit-learn-style classifier of sequences of stored texts (a user's
events, a conversation's messages, a document's paragraphs), one label per sequence.

Each row of the data is one message: its vector comes from the store through the usual pooling
and fusion (`pool`, `layers`, `fuse`), normalised with statistics of the training rows. Rows are
grouped into sequences by `group_by`, ordered by `order_by` (else row order), with the time since
the previous event from `time_col` if given. `seq_head` is the model over a sequence:

- `transformer`: a small transformer with a learned [CLS] (see `sequence_networks`);
- `gru`: a bidirectional GRU over the packed sequence;
- `mean`, `last`, `mean-last`, `mean-max`: the mean of the message vectors, the last message,
  both, or the mean and the max, into logistic regression (C by inner CV over small C);
- `auto`: the best message layout (`pool`, `layers`: what the user gave is kept) and head
  among `candidates`, by stratified inner cross-validation on the training sequences only
  (`sequence_search`), refitted on all of them.

Without `pool` a head that does not search reads the mean averaged over layers 1 to the top;
`weighted` mixes the layers with weights learned on the training sequences
(`sequence_layouts`).

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
from featstore.heads.sequence_layouts import (
    MessageLayout,
    MessageVectors,
    candidate_layouts,
    default_layout,
    learn_layer_weights,
)
from featstore.heads.sequence_networks import SequenceNetwork, build_sequence_network
from featstore.heads.sequence_search import (
    SEQUENCE_C_GRID,
    SequenceCandidate,
    search_sequences,
    summary_kind,
)
from featstore.heads.sequences import Sequences, group_rows, labels_from_table, labels_of
from featstore.heads.splits import holdout, inner_folds
from featstore.heads.training import TrainOptions, forward_all, torch_threads, train_network
from featstore.store import KEY_COLUMN, Store

ROW_LABELS = "_label"  # the column per-row labels (`y` one per row) are held in
# heads saved before `mean-max` existed called the mean and max summary `mean`
_LEGACY_SUMMARY = {"mean": "mean-max"}


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

    def message_layouts(self, store: Store) -> list[MessageLayout]:
        """The message layouts this head reads (auto: those it tries), on `store`'s encoder."""
        check_sequence_pooling(self.pool)
        encoder_id = store.resolve_encoder(self.encoder, kind="encoder")
        if self.seq_head == "auto":
            return candidate_layouts(store, encoder_id, self.pool, self.of, self.layers)
        return [default_layout(store, encoder_id, self.pool, self.of, self.layers)]

    def layout_params(self, store: Store) -> dict[str, Any]:
        """`pool`, `of` and `layers` naming the layout a head of this kind that does not search
        reads (what `compare` pins so its winner is chosen on the layout it compared)."""
        lay = default_layout(store, store.resolve_encoder(self.encoder, kind="encoder"),
                             self.pool, self.of, self.layers)
        return {"pool": lay.pool, "of": lay.of, "layers": list(lay.layers) or None}

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

    def _resolve(self, store: Store, layout: MessageLayout) -> InputLayout:
        return InputLayout.resolve(store, layout.pool, layout.of, list(layout.layers) or None,
                                   None, self.fuse, self.encoder)

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

    # -- fit ----------------------------------------------------------------------------------
    def check_inputs(self, store: Store, data: Any, where: str | None = None) -> None:
        """Fail fast, before any training, if these parameters or the store cannot serve
        `data`'s sequences; sets nothing."""
        self.validate_params()
        df, seqs, rows_where = self.sequences(store, data, need_labels=False)
        for layout in self.message_layouts(store):
            self.check_stored(store, self._resolve(store, layout), df, seqs, where or rows_where)

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
        layouts = self.message_layouts(store)
        for layout in layouts:
            resolved = self._resolve(store, layout)
            self._featurize_texts(store, df, resolved)
            self.check_stored(store, resolved, df, seqs, where)
        labels = labels_of(seqs, where)
        self.labels_ = LabelMap.fit(labels)
        self.classes_ = np.array(self.labels_.classes, dtype=object)
        targets = self.labels_.encode(labels, where)
        check_classes(self.labels_, where)
        keys = df[KEY_COLUMN].astype(str).tolist()
        vectors = {lay: MessageVectors.read(store, lay, self.fuse, self.encoder, self.normalize,
                                            keys, where) for lay in layouts}
        info: dict[str, Any] = {"sequences": len(seqs), "rows": len(df),
                                "mean_length": round(float(seqs.lengths.mean()), 2)}
        chosen = SequenceCandidate(layouts[0], self.seq_head, self.C)
        if self.seq_head == "auto":
            chosen, searched = self._choose(vectors, seqs, targets)
            info.update(searched)
        vec = vectors[chosen.layout]
        weights = None
        if chosen.layout.weighted:
            weights, c_weights = learn_layer_weights(vec, seqs.rows, targets, self.C,
                                                     SEQUENCE_C_GRID, self.max_iter, self.seed)
            info["layer_weights"] = {"layers": list(chosen.layout.layers),
                                     "weights": [round(float(w), 6) for w in weights],
                                     "C": c_weights}
        self.kind_, self.summary_, self.layout_ = chosen.kind, chosen.kind, chosen.layout
        self.inputs_, self.layer_weights_ = vec.inputs, weights
        info["seq_head"] = self.kind_
        info["layout"] = self.layout_.describe()
        self.model_, self.network_, fitted = self._fit_kind(
            self.kind_, vec.mixed(weights), seqs, targets, chosen.C)
        info.update(fitted)
        info["train_seconds"] = round(time.perf_counter() - start, 3)
        self.fit_info_ = info
        if progress is not None:
            progress.update(1)
        return self

    def _fit_kind(self, kind: str, matrix: np.ndarray, seqs: Sequences, y: np.ndarray,
                  c: float | None = None) -> tuple[Any, SequenceNetwork | None, dict[str, Any]]:
        if summary_kind(kind):
            x = summarize_sequences(kind, matrix, seqs.rows)
            model, info = fit_logreg(x, y, c, self.max_iter, self.seed, SEQUENCE_C_GRID)
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
        # attention learns order from small position embeddings, so the transformer needs
        # more steps than a GRU, which reads order from its recurrence (docs/HEADS.md)
        min_steps = self.min_steps if kind == "transformer" else 0
        opts = TrainOptions(epochs=self.epochs, min_steps=min_steps, lr=self.lr,
                            weight_decay=self.weight_decay,
                            batch_size=self.batch_size, patience=self.patience, seed=self.seed)
        with torch_threads(1):
            result = train_network(net, "classification", train_x, train_y, valid, opts)
        net.eval()
        return None, net, {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run}

    def _network(self, kind: str, in_dim: int) -> SequenceNetwork:
        return build_sequence_network(kind, in_dim, len(self.labels_.classes), self.width,
                                      self.depth, self.n_heads, self.max_len,
                                      self.time_col is not None, self.dropout, self.classifier)

    def _train_predict(self, kind: str, matrix: np.ndarray, train: Sequences, y: np.ndarray,
                       test: Sequences) -> np.ndarray:
        """A network of `kind` trained on `train`, its probabilities on `test` (auto's folds)."""
        model, net, _ = self._fit_kind(kind, matrix, train, y)
        return self._proba(kind, model, net, matrix, test)

    def _choose(self, vectors: dict[MessageLayout, MessageVectors], seqs: Sequences,
                y: np.ndarray) -> tuple[SequenceCandidate, dict[str, Any]]:
        """The winner of the inner-CV search over layouts and heads (`sequence_search`), and
        what `fit_info_` keeps of it: every candidate's scores, the best per head, the
        winner."""
        splits = inner_folds(y, len(y), self.inner_cv, self.seed)
        layouts = list(vectors)
        if not splits:  # too few sequences of a class for two folds: the simplest candidate
            default = layouts[min(1, len(layouts) - 1)]
            return SequenceCandidate(default, self.candidates[0], self.C), {
                "search": [], "inner_cv": {}, "inner_folds": 0}
        start = time.perf_counter()
        result = search_sequences(vectors, seqs, y, tuple(self.candidates), splits,
                                  self._train_predict, self.C, self.max_iter, self.seed)
        return result.winner, {
            "search": [c.record() for c in result.candidates],
            "inner_cv": result.best_per_head(), "inner_folds": result.folds,
            "chosen": result.winner.record(),
            "search_seconds": round(time.perf_counter() - start, 3)}

    # -- predict ------------------------------------------------------------------------------
    def _proba(self, kind: str, model: Any, net: SequenceNetwork | None, matrix: np.ndarray,
               seqs: Sequences, summary: str | None = None) -> np.ndarray:
        if summary_kind(kind):
            return model.predict_proba(summarize_sequences(summary or kind, matrix, seqs.rows))
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
        vec = MessageVectors.apply(store, self.layout_, self.inputs_,
                                   df[KEY_COLUMN].astype(str).tolist(), where)
        matrix = vec.mixed(self.layer_weights_)
        return seqs, self._proba(self.kind_, self.model_, self.network_, matrix, seqs,
                                 self.summary_)

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
        the kind `auto` chose, the message layout (with its layer weights), the stored rows
        read, input widths and label map."""
        tensors = self.inputs_.state()
        if self.model_ is not None:
            tensors.update(logreg_state(self.model_))
        if self.network_ is not None:
            tensors.update({f"net.{k}": v.detach().cpu().numpy().copy()
                            for k, v in self.network_.state_dict().items()})
        layout = self.layout_.to_json()
        if self.layer_weights_ is not None:
            layout["weights"] = [float(w) for w in self.layer_weights_]
        return tensors, {"seq_head": self.kind_, "summary": self.summary_,
                         "message_layout": layout, **self.inputs_.layout.to_json(),
                         "input_dims": self.inputs_.dims, "labels": self.labels_.classes}

    @classmethod
    def restore(cls, doc: dict[str, Any], tensors: dict[str, np.ndarray], name: str,
                store: Store | str | Path) -> SequenceClassifier:
        head = cls.from_config(doc["config"])
        head.store = store
        head.kind_ = str(doc["seq_head"])
        if "message_layout" in doc:
            saved = doc["message_layout"]
            head.layout_ = MessageLayout(str(saved["pool"]), tuple(saved["layers"]),
                                         saved.get("of"))
            weights = saved.get("weights")
            head.layer_weights_ = None if weights is None else np.asarray(weights, np.float32)
            head.summary_ = str(doc.get("summary", head.kind_))
        else:  # saved before layouts were chosen: the configured pooling, its layers averaged
            head.layout_ = MessageLayout(head.pool or "mean", tuple(doc["layers"]), head.of)
            head.layer_weights_ = None
            head.summary_ = _LEGACY_SUMMARY.get(head.kind_, head.kind_)
        head.inputs_ = HeadInputs(InputLayout.from_json(doc), head.layout_.pool,
                                  not head.layout_.weighted, True,
                                  head.normalize).load_state(doc["input_dims"], tensors)
        head.labels_ = LabelMap(list(doc["labels"]))
        head.classes_ = np.array(head.labels_.classes, dtype=object)
        head.metrics_ = doc.get("metrics", {})
        head.model_, head.network_ = None, None
        fit_info = doc.get("fit", {})
        if summary_kind(head.kind_):
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
