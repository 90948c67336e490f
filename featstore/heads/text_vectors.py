"""`StoredVectors`: raw texts in, their stored vectors out, as a scikit-learn transformer.

Texts the store lacks are featurized on the fly with the store's encoder, so the transformer can
open any scikit-learn pipeline over raw texts:

    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.linear_model import LogisticRegression
    >>> pipe = make_pipeline(StoredVectors(store="featstore-store", pool="mean-max"),
    ...                      StandardScaler(), LogisticRegression())
    >>> pipe.fit(train_texts, train_labels).score(test_texts, test_labels)

`set_output(transform="pandas")` names the columns (`mean_l6_0`, ...).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.base import TransformerMixin

from featstore.heads.base import StoreEstimator
from featstore.heads.errors import HeadError, ParamError
from featstore.heads.gather import gather_features
from featstore.heads.inputs import InputLayout, featurize_for_layouts
from featstore.heads.kinds import FIXED_POOLINGS, pooling
from featstore.heads.params import STORED_VECTORS, ParamSet
from featstore.heads.rows import keys_and_labels, store_from, texts_of
from featstore.store import FeatstoreError, Store


class StoredVectors(TransformerMixin, StoreEstimator):
    """Texts -> one vector each from the store: a fixed pooling (`pool`, `layers`, `of`) of the
    encoder's stored rows, float32, unnormalised (put a scaler after it)."""

    params: ClassVar[ParamSet] = STORED_VECTORS

    def _store(self) -> Store:
        return store_from(self.store)

    def check_combination(self) -> None:
        if pooling(self.pool).trainable:
            raise ParamError(f"StoredVectors takes a fixed pooling ({', '.join(FIXED_POOLINGS)}),"
                             f" not {{pool=}}{self.pool}; trainable poolings belong to a head")

    def _ensure(self, store: Store, X: Any, layout: InputLayout | None) -> None:
        texts = texts_of(X)
        if not texts:
            return
        if layout is not None:
            featurize_for_layouts(store, texts, [layout])
            return
        try:
            store.featurize_missing(texts, None, ("cls", "mean", "max"), model=self.encoder)
        except FeatstoreError as exc:
            raise HeadError(f"encoding texts the store lacks failed: {exc}") from None

    def fit(self, X: Any, y: Any = None) -> StoredVectors:
        """Settle which stored rows are read (and featurize the given texts the store lacks)."""
        self.validate_params()
        store = self._store()
        if not store.has_encoder():
            self._ensure(store, X, None)
        layout = InputLayout.resolve(store, self.pool, self.of, self.layers, None, (),
                                     self.encoder)
        self._ensure(store, X, layout)
        self.layout_ = layout
        entry = store.encoder_entry(layout.encoder_id)
        widths = [(f, int(entry.feature_shapes[f][-1])) for f in layout.features]
        if not pooling(self.pool).layered:
            names = [f"{f}_pooler_{i}" for f, w in widths for i in range(w)]
        elif self.pool == "concat":
            names = [f"{f}_l{layer}_{i}" for layer in layout.layers for f, w in widths
                     for i in range(w)]
        else:
            where = "l" + "-".join(map(str, layout.layers))
            names = [f"{f}_{where}_{i}" for f, w in widths for i in range(w)]
        self.feature_names_out_ = np.array(names, dtype=object)
        self.fit_info_ = {"encoder": layout.encoder_id, "features": len(names)}
        return self

    def transform(self, X: Any) -> np.ndarray:
        self.check_fitted()
        store = self._store()
        layout = self.layout_.bind(store)
        self._ensure(store, X, layout)
        keys, _, where = keys_and_labels(store, X, None, None, need_labels=False)
        layout.check(store, keys, where)
        layers = layout.layers if pooling(self.pool).layered else None
        out = gather_features(store, layout.encoder_id, keys, layout.features, layers,
                              self.pool if layers is not None else "none")
        return np.asarray(out, dtype=np.float32)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        self.check_fitted()
        return self.feature_names_out_
