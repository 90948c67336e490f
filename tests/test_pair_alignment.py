"""Token alignments and boosted trees for pairs: the alignment features equal a plain loop over
each layer's token similarities and ignore the pair's order; the exported trees predict what
scikit-learn's model predicts (missing values included) and survive their arrays; a pair head
on `align` + `cosine` with `boosting` equals the same pipeline built by hand from the stored
token states, round-trips through save and load, and joins `--auto` exactly when token states
are stored; a store without them is refused in one line whose advice, run as written, makes
the fit work."""

from __future__ import annotations

import numpy as np
import pytest
from pair_support import follow_token_advice, token_pair_store
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from test_guarantees_support import featurize_args

import featstore
from featstore.cli import main
from featstore.heads import load_head
from featstore.heads.alignment import STATS, alignment_width, pair_alignment
from featstore.heads.boosting import (
    LEARNING_RATE,
    MAX_ITER,
    BoostedTrees,
    fit_boosting,
    min_leaf,
)
from featstore.heads.errors import HeadError, ParamError
from featstore.heads.pair_estimator import PairClassifier, PairRegressor
from featstore.selection.candidates import pair_candidates


def _loop_alignment(a: np.ndarray, b: np.ndarray) -> list[float]:
    """The features written out one layer and one token at a time."""
    out = []
    for layer in range(a.shape[1]):
        x, y = a[:, layer].astype(np.float64), b[:, layer].astype(np.float64)
        sim = np.array([[xi @ yj / np.linalg.norm(xi) / np.linalg.norm(yj) for yj in y]
                        for xi in x])
        best_x = [max(row) for row in sim]
        best_y = [max(col) for col in sim.T]
        p, r = np.mean(best_x), np.mean(best_y)
        pf, rf = max(p, 1e-6), max(r, 1e-6)
        both = best_x + best_y
        out += [2 * pf * rf / (pf + rf), min(p, r), max(p, r), min(min(best_x), min(best_y)),
                max(min(best_x), min(best_y)), np.quantile(both, 0.1),
                np.quantile(both, 0.25), np.quantile(both, 0.5),
                sum(s > 0.9 for s in both) / len(both)]
    na, nb = len(a), len(b)
    return out + [np.log(1 + min(na, nb)), np.log(1 + max(na, nb)), abs(na - nb) / max(na, nb)]


@pytest.mark.parametrize("seed", range(6))
def test_alignment_features_equal_a_plain_loop_and_ignore_the_order(seed):
    rng = np.random.default_rng(seed)
    layers, hidden = int(rng.integers(1, 4)), int(rng.integers(3, 9))
    a = rng.normal(size=(int(rng.integers(1, 9)), layers, hidden)).astype(np.float32)
    b = rng.normal(size=(int(rng.integers(1, 9)), layers, hidden)).astype(np.float32)
    if seed % 2:  # b repeats some of a's tokens exactly: matches of 1.0 and the 0.9 share
        b[: min(len(a), len(b))] = a[: min(len(a), len(b))]
    got = pair_alignment(a, b)
    assert got.shape == (alignment_width(layers),) == (layers * len(STATS) + 3,)
    np.testing.assert_allclose(got, _loop_alignment(a, b), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pair_alignment(b, a), got, rtol=1e-6, atol=1e-6)


def test_a_text_aligned_with_itself_scores_full_matches():
    a = np.random.default_rng(0).normal(size=(5, 2, 4)).astype(np.float32)
    got = pair_alignment(a, a).reshape(-1)
    per_layer = got[:-3].reshape(2, len(STATS))
    np.testing.assert_allclose(per_layer, 1.0, atol=1e-6)
    np.testing.assert_allclose(got[-3:], [np.log(6), np.log(6), 0.0], rtol=1e-6)


@pytest.mark.parametrize("task,classes", [("regression", 0), ("classification", 2),
                                          ("classification", 4)])
def test_exported_trees_predict_what_scikit_learn_predicts(task, classes):
    rng = np.random.default_rng(classes)
    x = rng.normal(size=(600, 6))
    y = x[:, 0] * 2 + np.sin(3 * x[:, 1]) + 0.1 * rng.normal(size=600)
    if classes:
        y = np.digitize(y, np.quantile(y, np.linspace(0, 1, classes + 1)[1:-1]))
    x[rng.random(x.shape) < 0.05] = np.nan  # missing values take the learned side
    trees, info = fit_boosting(x, y, task, seed=0)
    kind = HistGradientBoostingRegressor if task == "regression" else \
        HistGradientBoostingClassifier
    ref = kind(learning_rate=LEARNING_RATE, max_iter=MAX_ITER, early_stopping=False,
               min_samples_leaf=20, random_state=0).fit(x, y)
    probe = rng.normal(size=(300, 6))
    probe[rng.random(probe.shape) < 0.05] = np.nan
    want = ref.predict(probe) if task == "regression" else ref.predict_proba(probe)
    np.testing.assert_allclose(trees.predict(probe), want, rtol=1e-9, atol=1e-9)
    again = BoostedTrees.from_state(trees.state(), trees.task)
    np.testing.assert_array_equal(again.predict(probe), trees.predict(probe))
    assert info["rounds"] == MAX_ITER
    if task == "regression":  # they learned the signal, not noise
        assert np.corrcoef(trees.predict(x[~np.isnan(x).any(1)]),
                           y[~np.isnan(x).any(1)])[0, 1] > 0.9


@pytest.mark.parametrize("rows,leaf", [(8, 2), (40, 4), (128, 12), (200, 20), (6000, 20)])
def test_small_sets_get_smaller_leaves_so_the_trees_still_split(rows, leaf):
    assert min_leaf(rows) == leaf
    rng = np.random.default_rng(rows)
    x = rng.normal(size=(rows, 2))
    trees, info = fit_boosting(x, x[:, 0], "regression")
    assert info["min_leaf"] == leaf
    pred = trees.predict(x)
    assert np.corrcoef(pred, x[:, 0])[0, 1] > 0.8  # not a constant


def test_damaged_tree_arrays_are_refused():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    trees, _ = fit_boosting(x, x[:, 0], "regression")
    state = trees.state()
    inner = np.flatnonzero(state["trees.leaf"] == 0)[0]
    state["trees.left"] = state["trees.left"].copy()
    state["trees.left"][inner] = 10 ** 6
    with pytest.raises(HeadError, match="child outside its tree"):
        BoostedTrees.from_state(state, "regression")
    short = dict(trees.state())
    short["trees.value"] = short["trees.value"][:-1]
    with pytest.raises(HeadError, match="disagree"):
        BoostedTrees.from_state(short, "regression")


@pytest.fixture(scope="module")
def token_pairs(tiny_model_dir, tmp_path_factory):
    return token_pair_store(tmp_path_factory.mktemp("align"), tiny_model_dir("bert"), seed=3)


def _hand_row(store, rows, layers):
    """align + cosine for each pair, from the stored token states and mean/max vectors."""
    enc = store.resolve_encoder(None, kind="encoder")
    pos = store.layer_positions(enc, layers)
    tok_a = store.gather_ragged(enc, rows._key_a.tolist(), "tokens")
    tok_b = store.gather_ragged(enc, rows._key_b.tolist(), "tokens")
    align = np.stack([pair_alignment(a[:, pos], b[:, pos])
                      for a, b in zip(tok_a, tok_b, strict=True)])
    cos = []
    for feature in ("mean", "max"):
        va = store.gather(enc, rows._key_a.tolist(), feature, layers).astype(np.float64)
        vb = store.gather(enc, rows._key_b.tolist(), feature, layers).astype(np.float64)
        cos.append((va * vb).sum(-1) / np.linalg.norm(va, axis=-1) / np.linalg.norm(vb, axis=-1))
    # the head's cosines come layer by layer within each feature, in the order it reads them
    return align, np.concatenate(cos, axis=1)


def test_an_align_boosting_head_equals_the_pipeline_built_by_hand(token_pairs, tmp_path):
    store, train, test = token_pairs["store"], token_pairs["train"], token_pairs["test"]
    layers = [0, 1, 2]
    head = PairRegressor("boosting", "concat", of="mean-max", layers=layers,
                         combine=["align", "cosine"], label_col="score").fit(store, train)
    a_tr, c_tr = _hand_row(store, train, layers)
    a_te, c_te = _hand_row(store, test, layers)
    # the pair's row: per-layer cosines first (the per-pair block's order), then the alignments
    x_tr = np.concatenate([c_tr, a_tr], axis=1)
    x_te = np.concatenate([c_te, a_te], axis=1)
    hand = HistGradientBoostingRegressor(learning_rate=LEARNING_RATE, max_iter=MAX_ITER,
                                         early_stopping=False, random_state=0,
                                         min_samples_leaf=min_leaf(len(train)))
    hand.fit(x_tr, train.score.to_numpy(float))
    got = head.predict(store, test)
    np.testing.assert_allclose(got, hand.predict(x_te), rtol=1e-4, atol=1e-4)
    assert np.corrcoef(got, test.score.to_numpy(float))[0, 1] > 0.5
    head.save(store, "align-boost")
    back = load_head(store, "align-boost")
    np.testing.assert_array_equal(back.predict(store, test), got)
    assert back.head_kind_ == "boosting" and list(back.combine) == ["align", "cosine"]


def test_an_align_classifier_separates_paraphrases(token_pairs):
    store, train, test = token_pairs["store"], token_pairs["train"], token_pairs["test"]
    clf = PairClassifier("boosting", "concat", of="mean", layers=[0, 1, 2],
                         combine=["align"]).fit(store, train)
    proba = clf.predict_proba(store, test)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-9)
    # b reorders a's words for every paraphrase: token matches are near-perfect at layer 0
    assert clf.score(store, test) >= 0.9


def test_the_search_tries_alignments_only_where_token_states_are_stored(token_pairs,
                                                                        tmp_path):
    with_tokens = pair_candidates(token_pairs["store"], "regression")
    names = [c.params.get("head") for c in with_tokens]
    assert "boosting" in names
    boost = next(c for c in with_tokens if c.params.get("head") == "boosting")
    assert boost.params["combine"] == ["align", "cosine"]
    assert boost.params["layers"] == [0, 1, 2]  # every stored layer
    assert boost.params["of"] == "cls-mean"
    plain = tmp_path / "plain"
    assert main(featurize_args(token_pairs["corpus"], plain, token_pairs["model"],
                               "--pair-cols", "a", "b", "--compute-dtype", "float32")) == 0
    assert "boosting" not in [c.params.get("head")
                              for c in pair_candidates(featstore.open(plain), "regression")]


def test_align_without_token_states_is_one_line_whose_advice_works(token_pairs, tmp_path,
                                                                   capsys):
    store = tmp_path / "s"
    follow_token_advice(capsys, token_pairs, store,
                        ("fit-head", "--store", store, "--head", "boosting", "--combine", "align",
                         "cosine", "--task", "regression", "--label-col", "score", "--out", "b",
                         "--no-progress"), "align")
    assert load_head(store, "b").head_kind_ == "boosting"


def test_align_needs_each_texts_states(token_pairs):
    with pytest.raises(ParamError, match="align"):
        PairClassifier("logreg", "mean", source="cross", combine=["align"]).fit(
            token_pairs["store"], token_pairs["train"])


def test_new_texts_are_encoded_with_their_token_states_to_be_aligned(token_pairs, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(token_pairs["store"].root, root)
    store = featstore.open(root)
    reg = PairRegressor("boosting", "concat", of="mean", layers=[0, 1, 2],
                        combine=["align"], label_col="score").fit(store, "para")
    new = [("zebra quartz violin", "violin quartz zebra"), ("zebra quartz", "lantern moss")]
    got = reg.predict(store, new)
    assert got.shape == (2,) and np.isfinite(got).all()
    enc = store.resolve_encoder(None, kind="encoder")
    toks = store.gather_ragged(enc, featstore.store.keys_for(["zebra quartz violin"]), "tokens")
    assert toks[0].shape[1:] == (3, 32)
    # the same pairs once stored give the same prediction
    np.testing.assert_array_equal(reg.predict(store, new), got)
