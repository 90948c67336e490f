"""Heads trained on stored features: poolings, fusion, logreg / linear / MLP heads, artifacts.

Reads features only through `featstore.store`; knows nothing about tokenizers or encoders.
"""

from featstore.heads.artifacts import list_heads, load_head, read_head_json, save_head
from featstore.heads.errors import HeadError
from featstore.heads.estimators import HeadClassifier, HeadRegressor, make_head
from featstore.heads.fusion import FUSE_MODES, NORMALIZATIONS
from featstore.heads.networks import HEADS
from featstore.heads.poolings import OF_CHOICES, POOLINGS

__all__ = [
    "FUSE_MODES", "HEADS", "NORMALIZATIONS", "OF_CHOICES", "POOLINGS", "HeadClassifier",
    "HeadError", "HeadRegressor", "list_heads", "load_head", "make_head", "read_head_json",
    "save_head",
]
