"""Pair heads on stored vectors: predictions equal a hand-built [u, v, |u-v|, u*v] pipeline on
the same stored rows; every pair head kind learns, predicts probabilities, gives a pair alone
what it gives it in a batch and round-trips through save and load; the cosine head is the plain
cosine; `symmetric` heads ignore the order; the scikit-learn estimators take (a, b) tuples and
two-column frames; the cross source serves any head; pair ensembles and the `--auto` search
save and load like any head."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pair_support import planted_pair_store
from scipy import stats
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, Ridge

import featstore
from featstore.heads import load_head
from featstore.heads.ensemble import HeadEnsemble
from featstore.heads.errors import HeadError, ParamError
from featstore.heads.pair_estimator import PairClassifier, PairRegressor
from featstore.selection.auto import HeadSelector

FAST = {"epochs": 40, "hidden": 32, "patience": 40, "batch_size": 32, "lr": 3e-3,
        "valid_fraction": 0.0}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    store = featstore.open(planted_pair_store(tmp_path_factory.mktemp("pairs") / "s",
                                              cross=True))
    df = store.dataset("pairs")
    return store, df[df.split == "train"].reset_index(drop=True), \
        df[df.split == "test"].reset_index(drop=True)


def _standardised(store, keys, train_keys):
    enc = store.resolve_encoder(None, kind="encoder")
    rows = store.gather(enc, train_keys, "mean", [2])[:, 0].astype(np.float64)
    mean, std = rows.mean(0).astype(np.float32), rows.std(0).astype(np.float32)
    std = np.where(std < 1e-6, 1.0, std).astype(np.float32)
    return (store.gather(enc, keys, "mean", [2])[:, 0].astype(np.float32) - mean) / std


def _senteval(store, df, train):
    texts = list(dict.fromkeys(train._key_a.tolist() + train._key_b.tolist()))
    u = _standardised(store, df._key_a.tolist(), texts)
    v = _standardised(store, df._key_b.tolist(), texts)
    return np.concatenate([u, v, np.abs(u - v), u * v], axis=1)


def test_pair_predictions_equal_a_hand_built_senteval_pipeline(planted):
    store, train, test = planted
    clf = PairClassifier("logreg", "mean", layers=[2], C=0.5).fit(store, train)
    hand = LogisticRegression(C=0.5, max_iter=100, random_state=0).fit(
        _senteval(store, train, train), train["label"].to_numpy())
    np.testing.assert_allclose(clf.predict_proba(store, test),
                               hand.predict_proba(_senteval(store, test, train)), atol=1e-6)
    assert clf.score(store, test) > 0.8
    reg = PairRegressor("ridge", "mean", layers=[2], C=0.25, label_col="score").fit(store,
                                                                                     train)
    ridge = Ridge(alpha=4.0).fit(_senteval(store, train, train), train["score"].to_numpy())
    np.testing.assert_allclose(reg.predict(store, test),
                               ridge.predict(_senteval(store, test, train)), atol=1e-5)


KINDS = {
    "logreg": ("classification", {"C": 1.0}),
    "linear": ("classification", FAST),
    "mlp": ("classification", FAST),
    "cosine": ("classification", {}),
    "projection": ("classification", FAST),
    "ridge": ("regression", {}),
    "mlp-regression": ("regression", FAST),
    "projection-regression": ("regression", FAST),
}


@pytest.mark.parametrize("case", KINDS)
def test_every_pair_head_kind_learns_predicts_and_round_trips(planted, case):
    store, train, test = planted
    task, extra = KINDS[case]
    kind = case.split("-")[0]
    label = "label" if task == "classification" else "score"
    est = (PairClassifier if task == "classification" else PairRegressor)
    head = est(kind, "mean", layers=[2], label_col=label, **extra).fit(store, train)
    pairs = list(zip(test.a, test.b, strict=True))
    if task == "classification":
        out = head.predict_proba(store, test)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-6)
        assert head.score(store, test) >= 0.75  # chance is about 1/2
        assert set(head.evaluate(store, test)) == {"accuracy", "macro_f1", "positive_f1"}
        np.testing.assert_allclose(head.predict_proba(store, pairs[:1])[0], out[0], atol=1e-6)
    else:
        out = head.predict(store, test)
        assert head.evaluate(store, test)["spearman"] > 0.6
        np.testing.assert_allclose(head.predict(store, pairs[:1])[0], out[0], atol=1e-6)
    head.save(store, f"pair-{case}", overwrite=True)
    again = load_head(store, f"pair-{case}")
    assert type(again) is type(head)
    got = again.predict_proba(store, test) if task == "classification" else \
        again.predict(store, test)
    np.testing.assert_allclose(got, out, atol=1e-6)
    twin = clone(head)
    assert twin.get_params() == head.get_params() and not twin.__sklearn_is_fitted__()


def test_the_cosine_head_is_the_plain_cosine(planted):
    store, train, test = planted
    reg = PairRegressor("cosine", "mean", layers=[2], label_col="score").fit(store, train)
    enc = store.resolve_encoder(None, kind="encoder")
    u = store.gather(enc, test._key_a.tolist(), "mean", [2])[:, 0].astype(np.float64)
    v = store.gather(enc, test._key_b.tolist(), "mean", [2])[:, 0].astype(np.float64)
    cos = (u * v).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
    pred = reg.predict(store, test)
    assert stats.pearsonr(pred, cos)[0] == pytest.approx(1.0, abs=1e-6)  # rescaled, not changed
    m = reg.evaluate(store, test)
    assert m["spearman"] == pytest.approx(stats.spearmanr(cos, test.score)[0], abs=1e-4)
    # for classes, thresholds on the cosine learned on the training pairs
    clf = PairClassifier("cosine", "mean", layers=[2]).fit(store, train)
    assert clf.score(store, test) > 0.8


def test_layer_cosines_and_symmetric_heads(planted):
    store, train, test = planted
    clf = PairClassifier("logreg", "concat", layers=[0, 1, 2, 3], of="mean-max",
                         combine=["cosine"], C=1.0).fit(store, train)
    assert clf.inputs_.matrix(store, clf._rows(store, test, None, False)).shape[1] == 8
    assert clf.score(store, test) > 0.8
    sym = PairClassifier("mlp", "mean", layers=[2], symmetric=True, **FAST).fit(store, train)
    pairs = list(zip(test.a, test.b, strict=True))
    flipped = [(b, a) for a, b in pairs]
    np.testing.assert_allclose(sym.predict_proba(store, pairs),
                               sym.predict_proba(store, flipped), atol=1e-6)


@pytest.mark.parametrize("source", ["cross", "both"])
def test_the_cross_source_serves_any_head(planted, source):
    store, train, test = planted
    for kind in ("logreg", "mlp"):
        params = {"C": 1.0} if kind == "logreg" else FAST
        clf = PairClassifier(kind, "mean", layers=[3] if source == "cross" else [2],
                             source=source, **params).fit(store, train)
        assert clf.score(store, test) > 0.8
        clf.save(store, "x", overwrite=True)
        np.testing.assert_allclose(load_head(store, "x").predict_proba(store, test),
                                   clf.predict_proba(store, test), atol=1e-6)
    with pytest.raises(ParamError, match="source=bi"):
        PairClassifier("cosine", source=source).validate_params()


def test_estimators_take_tuples_and_two_column_frames(planted):
    store, train, test = planted
    pairs = list(zip(train.a, train.b, strict=True))
    clf = PairClassifier("logreg", "mean", layers=[2], C=1.0, store=store)
    clf.fit(pairs, train["label"].tolist())
    frame = pd.DataFrame({"first": test.a, "second": test.b})
    by_frame = clf.predict_proba(frame)
    by_tuples = clf.predict_proba(list(zip(test.a, test.b, strict=True)))
    np.testing.assert_allclose(by_frame, by_tuples, atol=1e-9)
    from sklearn.model_selection import cross_val_score

    assert cross_val_score(clone(clf), pairs, train["label"].tolist(), cv=3).mean() > 0.7
    with pytest.raises(HeadError, match="pair 2 has no second text"):
        clf.predict([("a", "b"), ("toy text 1", " ")])
    with pytest.raises(HeadError, match=r"\(a, b\) tuples"):
        clf.predict(["toy text 1", "toy text 2"])


def test_a_text_dataset_is_refused_by_a_pair_head(planted, tmp_path):
    from test_heads_support import toy_store

    store, _, _ = toy_store(tmp_path / "t", n=30)
    with pytest.raises(HeadError, match="--pair-cols"):
        PairClassifier().fit(store, "toy")
    with pytest.raises(ParamError, match="pair dataset"):
        from featstore.heads.estimator import HeadClassifier

        HeadClassifier(head="cosine").validate_params()


def test_pair_ensembles_and_the_search_save_and_load(planted):
    store, train, test = planted
    mix = HeadEnsemble([{"head": "logreg", "pool": "mean", "layers": [2], "C": 1.0},
                        {"head": "cosine", "pool": "mean", "layers": [2]}], [2, 1],
                       unit="pair").fit(store, train)
    mix.save(store, "mix", overwrite=True)
    np.testing.assert_allclose(load_head(store, "mix").predict_proba(store, test),
                               mix.predict_proba(store, test), atol=1e-6)
    space = [{"head": "cosine", "pool": "mean", "layers": [2]},
             {"head": "logreg", "pool": "mean", "layers": [2], "C": 1.0},
             {"head": "logreg", "source": "cross", "pool": "mean", "layers": [3], "C": 1.0}]
    sel = HeadSelector(store, budget=120, folds=3, search_space=space).fit(store, train)
    assert sel.best_name_ and len(sel.cv_results_) == 3
    assert sel.score(store, test) > 0.8
    sel.save(store, "auto", overwrite=True)
    np.testing.assert_allclose(load_head(store, "auto").predict_proba(store, test),
                               sel.predict_proba(store, test), atol=1e-6)
