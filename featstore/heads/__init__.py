"""Heads trained on stored features: poolings, fusion, logreg / linear / MLP heads, artifacts.

Reads features only through `featstore.store`; knows nothing about tokenizers or encoders.
Names are loaded on first use, so importing a light module of this package (`choices`) never
loads torch or scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import Any

from featstore.heads.choices import (
    FUSE_MODES,
    HEADS,
    NORMALIZATIONS,
    OF_CHOICES,
    POOLINGS,
    TASKS,
)
from featstore.heads.errors import HeadError

_LAZY = {
    "HeadClassifier": "featstore.heads.estimator",
    "HeadEstimator": "featstore.heads.estimator",
    "HeadRegressor": "featstore.heads.estimator",
    "HeadEnsemble": "featstore.heads.ensemble",
    "load_head": "featstore.heads.ensemble",
    "make_head": "featstore.heads.estimator",
    "StoredVectors": "featstore.heads.text_vectors",
    "list_heads": "featstore.heads.artifacts",
    "read_head_json": "featstore.heads.artifacts",
}

__all__ = ["FUSE_MODES", "HEADS", "NORMALIZATIONS", "OF_CHOICES", "POOLINGS", "TASKS",
           "HeadError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
