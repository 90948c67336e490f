"""`load_head`: whichever head is saved under a name, of any kind: a per-text classifier or
regressor, a sequence head, a pair classifier or regressor, or an ensemble of classifiers or
of regressors."""

from __future__ import annotations

from pathlib import Path

from featstore.heads.base import StoreHead
from featstore.heads.ensemble import HeadEnsemble
from featstore.heads.ensemble_regressor import EnsembleRegressor
from featstore.heads.estimator import HeadClassifier, HeadRegressor
from featstore.heads.pair_estimator import PairClassifier, PairRegressor
from featstore.heads.sequence_estimator import SequenceClassifier
from featstore.store import Store

# every kind `load` can build; importing their modules registers them
KINDS = (HeadClassifier, HeadRegressor, SequenceClassifier, PairClassifier, PairRegressor,
         HeadEnsemble, EnsembleRegressor)


def load_head(store: Store | str | Path, name: str) -> StoreHead:
    """The head saved as STORE/heads/NAME, predicting what it did when saved."""
    return StoreHead.load(store, name)
