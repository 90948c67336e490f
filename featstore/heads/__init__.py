"""Heads trained on stored features: one estimator base, every parameter declared once, units
of one example (a text, a sequence of texts, a pair of texts) as small input adapters, and the
kinds a head is built from (poolings, head kinds) in one registry each.

Reads features only through `featstore.store`; knows nothing about tokenizers or encoders.
Names are loaded on first use, so importing a light module of this package (`kinds`, `params`)
never loads torch or scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import Any

from featstore.heads.errors import HeadError, ParamError
from featstore.heads.kinds import (
    FUSE_MODES,
    HEADS,
    NORMALIZATIONS,
    OF_CHOICES,
    POOLINGS,
    SEQ_HEADS,
    TASKS,
)

_LAZY = {
    "HeadClassifier": "featstore.heads.estimator",
    "HeadEstimator": "featstore.heads.estimator",
    "HeadRegressor": "featstore.heads.estimator",
    "make_head": "featstore.heads.estimator",
    "SequenceClassifier": "featstore.heads.sequence_estimator",
    "PairClassifier": "featstore.heads.pair_estimator",
    "PairRegressor": "featstore.heads.pair_estimator",
    "make_pair_head": "featstore.heads.pair_estimator",
    "HeadEnsemble": "featstore.heads.ensemble",
    "EnsembleRegressor": "featstore.heads.ensemble_regressor",
    "load_head": "featstore.heads.loading",
    "StoredVectors": "featstore.heads.text_vectors",
    "list_heads": "featstore.heads.artifacts",
    "read_head_json": "featstore.heads.artifacts",
}

__all__ = ["FUSE_MODES", "HEADS", "NORMALIZATIONS", "OF_CHOICES", "POOLINGS", "SEQ_HEADS",
           "TASKS", "HeadError", "ParamError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
