"""One contract over every registered kind (featstore.heads.kinds): every pooling and every head
kind learns the toy task, predicts probabilities that sum to one, gives a batch of one what it
gives that row in a batch, and saves and loads to the same predictions. A kind added to a
registry is tested here without a new test."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sequence_support import message_store, order_rows
from sklearn.base import clone
from test_heads_support import toy_store

from featstore.heads import load_head
from featstore.heads.errors import ParamError
from featstore.heads.estimator import make_head
from featstore.heads.kinds import (
    HEAD_KINDS,
    POOLINGS,
    POOLINGS_BY_NAME,
    SEQ_HEADS,
    check_combination,
    compatible,
    default_head,
)
from featstore.heads.networks import head_module
from featstore.heads.poolings import pooling_module
from featstore.heads.sequence_estimator import SequenceClassifier

FAST = {"epochs": 30, "hidden": 32, "patience": 30, "batch_size": 64}
TEXT_KINDS = [k for k, h in HEAD_KINDS.items() if h.unit == "text"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    store, _, texts = toy_store(tmp_path_factory.mktemp("kinds") / "s", tokens=True)
    df = store.dataset("toy")
    return store, df[df.split == "train"].reset_index(drop=True), df[df.split == "test"], texts


def _contract(store, head, test, texts, name):
    proba = head.predict_proba(store, test)
    assert proba.shape == (len(test), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert head.score(store, test) >= 0.6  # chance is 1/3; most kinds reach 1.0 here
    one = head.predict_proba(store, [texts[0]])
    np.testing.assert_allclose(one[0], head.predict_proba(store, texts[:4])[0], atol=1e-6)
    head.save(store, name, overwrite=True)
    np.testing.assert_allclose(load_head(store, name).predict_proba(store, test), proba,
                               atol=1e-6)
    twin = clone(head)
    assert twin.get_params() == head.get_params() and not twin.__sklearn_is_fitted__()


@pytest.mark.parametrize("pool", POOLINGS)
def test_every_pooling_learns_predicts_and_round_trips(toy, pool):
    store, train, test, texts = toy
    head = default_head(pool, "classification", "concat")
    params = {"pool": pool, **({"C": 1.0} if head == "logreg" else FAST)}
    if POOLINGS_BY_NAME[pool].takes_layer_start:
        params["layer_start"] = 0
    kind = POOLINGS_BY_NAME[pool]
    if kind.pairs_only:  # its contract on pairs: tests/test_pair_soft_align.py
        with pytest.raises(ParamError, match="pair"):
            make_head("classification", **params).fit(store, train)
    else:
        clf = make_head("classification", **params).fit(store, train)
        _contract(store, clf, test, texts, f"pool-{pool}")
        assert clf.inputs_.layout.features == kind.features(None)
    # a trainable pooling is a torch module over [batch, layers, dim]; a fixed one has none
    if kind.trainable:
        module = pooling_module(pool, 4, 16, 32)
        assert module(torch.randn(2, 4, 16), torch.ones(2, 4, dtype=torch.bool)).shape[0] == 2
    else:
        with pytest.raises(Exception, match="no trainable module"):
            pooling_module(pool, 4, 16, 32)


@pytest.mark.parametrize("kind", TEXT_KINDS)
def test_every_per_text_head_kind_learns_predicts_and_round_trips(toy, kind):
    store, train, test, texts = toy
    accepted = [p for p in POOLINGS if compatible(p, kind, "classification")]
    assert "mean" in accepted
    params = {"pool": "mean", "head": kind, **({"C": 1.0} if kind == "logreg" else FAST)}
    clf = make_head("classification", **params).fit(store, train)
    _contract(store, clf, test, texts, f"head-{kind}")
    assert clf.head_kind_ == kind
    if HEAD_KINDS[kind].trained_by == "torch":
        assert head_module(kind, 16, 3, 8, 0.1)(torch.randn(1, 16)).shape == (1, 3)
    if "regression" in HEAD_KINDS[kind].tasks:
        df = store.dataset("toy")
        target = store.gather(store.resolve_encoder(), df["_key"].tolist(), "mean", 3)[:, 0]
        scored = df.assign(score=target.astype(float))
        reg = make_head("regression", pool="mean", head=kind, label_col="score", dropout=0.0,
                        lr=1e-2, **FAST).fit(store, scored[scored.split == "train"])
        assert reg.score(store, scored[scored.split == "test"]) > 0.6  # R squared


@pytest.mark.parametrize("kind", TEXT_KINDS)
def test_each_head_kinds_rules_are_the_registrys(kind):
    """What the registry says a head accepts is exactly what estimators accept."""
    for pool in POOLINGS:
        for task in ("classification", "regression"):
            for mode in ("concat", "project"):
                ok = compatible(pool, kind, task, mode)
                model = HEAD_KINDS[kind]
                expected = task in model.tasks and model.accepts(POOLINGS_BY_NAME[pool]) and \
                    (mode == "concat" or model.trained_by == "torch") and \
                    not POOLINGS_BY_NAME[pool].pairs_only
                assert ok == expected, (pool, kind, task, mode)
                head = make_head(task, pool=pool, head=kind, fuse_mode=mode)
                if ok:
                    head.validate_params()
                else:
                    with pytest.raises(ParamError):
                        head.validate_params()
                    with pytest.raises(ParamError):
                        check_combination(pool, kind, task, mode)


@pytest.fixture(scope="module")
def messages(tmp_path_factory):
    store, texts, kinds = message_store(tmp_path_factory.mktemp("seqkinds") / "store")
    return store, order_rows(texts, kinds, 120, seed=1), order_rows(texts, kinds, 60, seed=2)


@pytest.mark.parametrize("kind", SEQ_HEADS)
def test_every_sequence_head_kind_predicts_and_round_trips(messages, kind):
    store, train, test = messages
    params = {"epochs": 25, "valid_fraction": 0.0, "batch_size": 32}
    clf = SequenceClassifier(kind, "seq", "turn", store=store, inner_cv=2,
                             candidates=("mean", "transformer"), **params).fit(store, train)
    proba = clf.predict_proba(store, test)
    assert proba.shape == (test["seq"].nunique(), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    # the order task: only a model that reads order learns it; one reading the last message
    # sees part of it (when the last is one of the two that decide), an average none
    score = clf.score(store, test)
    if kind in ("transformer", "gru", "auto"):
        assert score >= 0.9
    elif kind in ("last", "mean-last"):
        assert 0.6 <= score <= 0.85
    else:
        assert score <= 0.65
    clf.save(store, f"seq-{kind}", overwrite=True)
    again = load_head(store, f"seq-{kind}")
    assert isinstance(again, SequenceClassifier) and again.kind_ == clf.kind_
    np.testing.assert_allclose(again.predict_proba(store, test), proba, atol=1e-6)
    if HEAD_KINDS[kind].chooses:
        assert clf.kind_ in clf.candidates
    with pytest.raises(ParamError, match="sequence heads read one fixed vector"):
        SequenceClassifier(kind, "seq", pool="lstm").validate_params()
