"""Gradient-boosted trees (scikit-learn's histogram GBM) for a pair's row of a few dozen
features (token alignments, cosines), where a linear model cannot bend and an MLP needs more
rows. The fitted trees are kept as plain arrays (`BoostedTrees`) and predict on their own, so a
saved head is rebuilt exactly without pickle; the same arrays predict right after fitting, so
a fitted and a loaded head cannot differ."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from featstore.heads.errors import HeadError

LEARNING_RATE = 0.05
MAX_ITER = 300  # fixed rounds: chosen on the inner folds of STS-B and SICK training rows
MAX_LEAF_ROWS = 20  # scikit-learn's default smallest leaf, shrunk on small sets (`min_leaf`)
FIELDS = ("feature_idx", "num_threshold", "missing_go_to_left", "left", "right", "is_leaf",
          "value")


@dataclass
class BoostedTrees:
    """The trees of a fitted model as flat node arrays: tree t's nodes are
    `nodes[offsets[t]:offsets[t+1]]`, child indices relative to the tree; trees run round by
    round, `per_round` of them (one per class beyond two, else one). A row goes left when its
    value is <= the node's threshold (NaN: as `missing_go_to_left` says)."""

    feature: np.ndarray  # int64 [nodes]
    threshold: np.ndarray  # float64 [nodes]
    missing_left: np.ndarray  # bool [nodes]
    left: np.ndarray  # int64 [nodes]
    right: np.ndarray  # int64 [nodes]
    leaf: np.ndarray  # bool [nodes]
    value: np.ndarray  # float64 [nodes]
    offsets: np.ndarray  # int64 [trees + 1]
    baseline: np.ndarray  # float64 [per_round]
    task: str  # regression | classification

    @property
    def per_round(self) -> int:
        return len(self.baseline)

    def raw(self, x: np.ndarray) -> np.ndarray:
        """[rows, per_round] sums of the trees' leaf values plus the baseline."""
        x = np.asarray(x, dtype=np.float64)
        out = np.tile(self.baseline, (len(x), 1))
        rows = np.arange(len(x))
        for t in range(len(self.offsets) - 1):
            base = int(self.offsets[t])
            node = np.full(len(x), base, dtype=np.int64)
            live = ~self.leaf[node]
            while live.any():
                n = node[live]
                v = x[rows[live], self.feature[n]]
                go_left = np.where(np.isnan(v), self.missing_left[n], v <= self.threshold[n])
                node[live] = base + np.where(go_left, self.left[n], self.right[n])
                live = ~self.leaf[node]
            out[:, t % self.per_round] += self.value[node]
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Regression: the prediction; classification: [rows, classes] probabilities."""
        raw = self.raw(x)
        if self.task == "regression":
            return raw[:, 0]
        if self.per_round == 1:  # two classes: one tree a round, the second class's log-odds
            p = 1.0 / (1.0 + np.exp(-raw[:, 0]))
            return np.column_stack([1.0 - p, p])
        e = np.exp(raw - raw.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def state(self) -> dict[str, np.ndarray]:
        return {"trees.feature": self.feature, "trees.threshold": self.threshold,
                "trees.missing_left": self.missing_left.astype(np.uint8),
                "trees.left": self.left, "trees.right": self.right,
                "trees.leaf": self.leaf.astype(np.uint8), "trees.value": self.value,
                "trees.offsets": self.offsets, "trees.baseline": self.baseline}

    @classmethod
    def from_state(cls, tensors: dict[str, np.ndarray], task: str) -> BoostedTrees:
        try:
            t = {k: np.asarray(tensors[f"trees.{k}"]) for k in
                 ("feature", "threshold", "missing_left", "left", "right", "leaf", "value",
                  "offsets", "baseline")}
        except KeyError as exc:
            raise HeadError(f"the saved trees lack {exc.args[0]}") from None
        trees = cls(t["feature"].astype(np.int64), t["threshold"].astype(np.float64),
                    t["missing_left"].astype(bool), t["left"].astype(np.int64),
                    t["right"].astype(np.int64), t["leaf"].astype(bool),
                    t["value"].astype(np.float64), t["offsets"].astype(np.int64),
                    t["baseline"].astype(np.float64).reshape(-1), task)
        trees.check()
        return trees

    def check(self) -> None:
        """Refuse arrays that would index outside their tree (a damaged file)."""
        n = len(self.feature)
        sizes = np.diff(self.offsets)
        if len(self.offsets) < 2 or self.offsets[0] != 0 or self.offsets[-1] != n \
                or (sizes < 1).any() or len(self.offsets) - 1 < self.per_round \
                or any(len(a) != n for a in (self.threshold, self.missing_left, self.left,
                                             self.right, self.leaf, self.value)):
            raise HeadError("the saved trees are damaged: their node arrays disagree")
        limit = np.repeat(sizes, sizes)
        inner = ~self.leaf
        for child in (self.left, self.right):
            if ((child[inner] < 1) | (child[inner] >= limit[inner])).any():
                raise HeadError("the saved trees are damaged: a child outside its tree")


def min_leaf(rows: int) -> int:
    """The smallest leaf: scikit-learn's 20 from 200 rows, a tenth of the rows below that
    (at least 2), so a few dozen pairs still split instead of predicting a constant."""
    return int(np.clip(rows // 10, 2, MAX_LEAF_ROWS))


def fit_boosting(x: np.ndarray, y: np.ndarray, task: str, seed: int = 0
                 ) -> tuple[BoostedTrees, dict]:
    """Fit on all rows (class codes 0..k-1 or targets); returns the trees and fit facts."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    kind = HistGradientBoostingRegressor if task == "regression" else \
        HistGradientBoostingClassifier
    leaf = min_leaf(len(x))
    model = kind(learning_rate=LEARNING_RATE, max_iter=MAX_ITER, early_stopping=False,
                 min_samples_leaf=leaf, random_state=seed)
    with threadpool_limits(2):
        model.fit(np.asarray(x, dtype=np.float64), y)
    if task != "regression" and len(model.classes_) != int(np.max(y)) + 1:
        raise HeadError("gradient-boosted trees need every class among the training rows")
    trees = _export(model, task)
    probe = np.asarray(x[:256], dtype=np.float64)
    theirs = model.predict(probe) if task == "regression" else model.predict_proba(probe)
    if not np.allclose(trees.predict(probe), theirs, rtol=1e-6, atol=1e-9):
        raise HeadError("this scikit-learn version's boosted trees did not survive their "
                        "export; install scikit-learn 1.3 to 1.9")
    return trees, {"rounds": int(model.n_iter_), "learning_rate": LEARNING_RATE,
                   "min_leaf": leaf}


def _export(model: object, task: str) -> BoostedTrees:
    """The fitted model's trees as arrays. They live in attributes scikit-learn does not
    promise to keep, so their layout is checked, and the export must reproduce the model's
    own raw outputs before it is used."""
    predictors = getattr(model, "_predictors", None)
    baseline = getattr(model, "_baseline_prediction", None)
    if predictors is None or baseline is None or not predictors \
            or not hasattr(predictors[0][0], "nodes") \
            or not set(FIELDS) <= set(predictors[0][0].nodes.dtype.names or ()):
        raise HeadError("this scikit-learn version keeps its boosted trees in a form featstore "
                        "cannot save; install scikit-learn 1.3 to 1.9")
    nodes = [p.nodes for rnd in predictors for p in rnd]
    offsets = np.cumsum([0] + [len(n) for n in nodes]).astype(np.int64)
    cat = np.concatenate(nodes)
    trees = BoostedTrees(cat["feature_idx"].astype(np.int64),
                         cat["num_threshold"].astype(np.float64),
                         cat["missing_go_to_left"].astype(bool), cat["left"].astype(np.int64),
                         cat["right"].astype(np.int64), cat["is_leaf"].astype(bool),
                         cat["value"].astype(np.float64), offsets,
                         np.asarray(baseline, dtype=np.float64).reshape(-1), task)
    trees.check()
    return trees
