"""Heads saved before the estimators shared one base still load and predict what they did:
tests/fixtures/saved_heads holds heads written at commit 7d12e52 (see make_saved_heads.py in
that folder) with the predictions they made then, on stores the test helpers rebuild exactly;
`sequence-mean` was written at commit abc354d, when the `mean` sequence head read the mean and
the max of the messages (now `mean-max`), the same way."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sequence_support import message_store, order_rows
from test_heads_support import toy_store

from featstore.heads import HeadEnsemble, HeadRegressor, SequenceClassifier, load_head

FIXTURE = Path(__file__).parent / "fixtures" / "saved_heads"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("saved")
    toy, _, _ = toy_store(root / "toy", laser=True)
    messages, texts, kinds = message_store(root / "messages")
    for name in ("toy", "messages"):
        for head in (FIXTURE / name).iterdir():
            shutil.copytree(head, root / name / "heads" / head.name)
    return toy, messages, texts, kinds


@pytest.mark.parametrize("name", ["text-logreg", "text-mlp-project", "text-ensemble"])
def test_saved_text_classifiers_predict_as_they_did(stores, name):
    store = stores[0]
    df = store.dataset("toy")
    head = load_head(store, name)
    np.testing.assert_allclose(head.predict_proba(store, df[df.split == "test"]),
                               EXPECTED[name], atol=1e-6)
    if name == "text-ensemble":
        assert isinstance(head, HeadEnsemble)
        np.testing.assert_allclose(head.weights_, [2 / 3, 1 / 3], atol=1e-6)
    if name == "text-mlp-project":  # saved when the seed count was called `ensemble`
        assert head.seeds == 2 and len(head.networks_) == 2


def test_saved_regressor_predicts_as_it_did(stores):
    store = stores[0]
    df = store.dataset("toy")
    head = load_head(store, "text-regressor")
    assert isinstance(head, HeadRegressor) and head.seeds == 1
    np.testing.assert_allclose(head.predict(store, df[df.split == "test"]),
                               EXPECTED["text-regressor"], atol=1e-5)


@pytest.mark.parametrize("name", ["sequence-gru", "sequence-mean-last", "sequence-mean"])
def test_saved_sequence_heads_predict_as_they_did(stores, name):
    _, store, texts, kinds = stores
    head = load_head(store, name)  # the one loader reads every kind
    assert isinstance(head, SequenceClassifier)
    if name == "sequence-mean":  # its `mean` summarised the mean and the max
        assert (head.kind_, head.summary_) == ("mean", "mean-max")
        assert head.layout_.describe() == "mean of layer 3"
    np.testing.assert_allclose(head.predict_proba(store, order_rows(texts, kinds, 20, seed=2)),
                               EXPECTED[name], atol=1e-6)
