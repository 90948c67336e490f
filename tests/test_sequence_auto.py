"""`--seq-head auto`: what it tries (every message layout with every summary head and C, the
networks on the best layout), that its inner folds keep each sequence whole and see only the
training sequences, that choices the user made are kept, that layer weights are learned where
the signal is, and that a saved auto head predicts what it did."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sequence_support import conversation_store, message_store, order_rows
from test_guarantees_support import run_cli
from test_heads_support import HIDDEN, LAYERS, build_store

from featstore.heads import SequenceClassifier, load_head, sequence_estimator, sequence_search
from featstore.heads.kinds import SEQUENCE_SEARCHED
from featstore.heads.sequence_search import SEQUENCE_C_GRID
from featstore.store import keys_for, open_store

QUICK = {"epochs": 4, "valid_fraction": 0.0, "batch_size": 32}
EVERY = "mean, average of layers 1-3"
TOP = "mean of layer 3"
WEIGHTED = "weighted layers 1-3 of mean"


@pytest.fixture(scope="module")
def order_task(tmp_path_factory):
    store, texts, kinds = message_store(tmp_path_factory.mktemp("auto") / "store")
    return store, order_rows(texts, kinds, 90, seed=1), order_rows(texts, kinds, 40, seed=2)


def layer_signal_rows(root, n_seq: int = 120, signal_layer: int = 1, seed: int = 0):
    """Sequences of 3 messages whose label shows in one layer of the mean vectors only (the
    others noise, twice as loud): a store whose layers do not all say the same."""
    rng = np.random.default_rng(seed)
    n = 3 * n_seq
    y = np.repeat(np.arange(n_seq) % 2, 3)
    direction = rng.normal(size=HIDDEN)
    feats = {}
    for name in ("cls", "mean", "max"):
        arr = 2.0 * rng.normal(size=(n, len(LAYERS), HIDDEN))
        arr[:, LAYERS.index(signal_layer)] = rng.normal(size=(n, HIDDEN)) + \
            0.8 * np.where(y[:, None] == 1, 1.0, -1.0) * direction
        feats[name] = arr.astype(np.float16)
    texts = [f"event {i}" for i in range(n)]
    cols = {"seq": [f"s{i // 3}" for i in range(n)], "turn": [i % 3 for i in range(n)],
            "label": ["up" if v else "down" for v in y]}
    build_store(root, texts, cols, feats, name="events")
    store = open_store(root)
    return store, store.dataset("events")


def searched(clf: SequenceClassifier) -> set[tuple[str, str, float | None]]:
    return {(r["layout"], r["seq_head"], r["C"]) for r in clf.fit_info_["search"]}


# -- what auto tries ------------------------------------------------------------------------------
def test_auto_tries_every_layout_with_every_summary_head_and_the_networks_on_the_best(
        order_task):
    store, train, _ = order_task
    clf = SequenceClassifier("auto", "seq", "turn", store=store, inner_cv=2, **QUICK)
    clf.fit(store, train)
    tried = searched(clf)
    summaries = [k for k in SEQUENCE_SEARCHED if k not in ("gru", "transformer")]
    assert {(lay, k, c) for lay in (TOP, EVERY, WEIGHTED) for k in summaries
            for c in SEQUENCE_C_GRID} <= tried
    networks = {(lay, k) for lay, k, c in tried if c is None}
    assert {k for _, k in networks} == {"gru", "transformer"}
    assert len(networks) == 2  # on one layout: the one the summary heads liked best
    best_summary = max((r for r in clf.fit_info_["search"] if r["C"] is not None),
                       key=lambda r: r["inner_accuracy"])
    assert {lay for lay, _ in networks} == {best_summary["layout"]}
    assert len(tried) == 3 * len(summaries) * len(SEQUENCE_C_GRID) + 2
    # every candidate scored on both inner folds; the winner is the best of them
    assert all(r["folds"] == 2 for r in clf.fit_info_["search"])
    won = clf.fit_info_["chosen"]
    assert won["inner_accuracy"] == max(r["inner_accuracy"] for r in clf.fit_info_["search"])
    assert (clf.kind_, clf.layout_.describe()) == (won["seq_head"], won["layout"])
    # the order task: a network reads it, no summary does
    assert clf.kind_ in ("gru", "transformer")
    assert clf.fit_info_["inner_cv"][clf.kind_] > clf.fit_info_["inner_cv"]["mean-max"] + 0.2


@pytest.mark.parametrize(("given", "layouts"), [
    ({"pool": "mean"}, {TOP, EVERY}),
    ({"pool": "max"}, {"max of layer 3", "max, average of layers 1-3"}),
    ({"layers": [2, 3]}, {"mean, average of layers 2,3", "weighted layers 2,3 of mean"}),
    ({"pool": "mean", "layers": [1, 2, 3]}, {EVERY}),
    ({"pool": "weighted", "of": "max"}, {"weighted layers 1-3 of max"}),
    ({"pool": "pooler"}, {"pooler"}),
])
def test_auto_keeps_what_the_user_gave(order_task, given, layouts):
    store, train, _ = order_task
    clf = SequenceClassifier("auto", "seq", "turn", store=store, inner_cv=2,
                             candidates=("mean", "mean-last"), **given).fit(store, train)
    assert {r["layout"] for r in clf.fit_info_["search"]} == layouts
    assert {r["seq_head"] for r in clf.fit_info_["search"]} == {"mean", "mean-last"}
    assert clf.layout_.describe() in layouts


def test_a_given_C_is_the_only_one_tried(order_task):
    store, train, _ = order_task
    clf = SequenceClassifier("auto", "seq", "turn", store=store, inner_cv=2, C=0.05,
                             candidates=("last",), pool="mean").fit(store, train)
    assert {r["C"] for r in clf.fit_info_["search"]} == {0.05}
    assert clf.fit_info_["C"] == 0.05


# -- inner folds: training sequences only, each whole --------------------------------------------
def test_inner_folds_keep_every_sequence_whole_and_see_only_training_sequences(
        order_task, monkeypatch):
    store, train, _ = order_task
    seen: dict[str, list] = {"splits": [], "networks": [], "weights": []}
    search = sequence_search.search_sequences

    def spy_search(vectors, seqs, y, kinds, splits, *args, **kwargs):
        seen["splits"] = [([seqs.groups[i] for i in tr], [seqs.groups[i] for i in te],
                           np.concatenate([seqs.rows[i] for i in tr]),
                           np.concatenate([seqs.rows[i] for i in te])) for tr, te in splits]
        seen["groups"] = list(seqs.groups)
        return search(vectors, seqs, y, kinds, splits, *args, **kwargs)

    learn = sequence_search.learn_layer_weights

    def spy_weights(vec, rows, *args, **kwargs):
        seen["weights"].append(np.concatenate(rows))
        return learn(vec, rows, *args, **kwargs)

    fit_kind = SequenceClassifier._train_predict

    def spy_networks(self, kind, matrix, fold_train, y, fold_test):
        seen["networks"].append((set(fold_train.groups), set(fold_test.groups)))
        return fit_kind(self, kind, matrix, fold_train, y, fold_test)

    monkeypatch.setattr(sequence_estimator, "search_sequences", spy_search)
    monkeypatch.setattr(sequence_search, "learn_layer_weights", spy_weights)
    monkeypatch.setattr(SequenceClassifier, "_train_predict", spy_networks)
    clf = SequenceClassifier("auto", "seq", "turn", store=store, inner_cv=3, **QUICK)
    clf.fit(store, train)
    assert set(seen["groups"]) == set(train["seq"])  # the training sequences, no other
    assert len(seen["splits"]) == 3
    rows_of = train.reset_index(drop=True)
    held_out = set()
    for tr_groups, te_groups, tr_rows, te_rows in seen["splits"]:
        assert not set(tr_groups) & set(te_groups)
        assert set(tr_groups) | set(te_groups) == set(seen["groups"])
        # rows: a group's rows all on one side, none on both
        assert not set(tr_rows.tolist()) & set(te_rows.tolist())
        assert set(rows_of.loc[tr_rows, "seq"]) == set(tr_groups)
        assert set(rows_of.loc[te_rows, "seq"]) == set(te_groups)
        assert len(tr_rows) + len(te_rows) == len(rows_of)
        held_out |= set(te_groups)
    assert held_out == set(seen["groups"])  # every training sequence held out once
    # layer weights: learned on each fold's training rows (and once on all of them), never on
    # the rows the fold scores
    folds_rows = [set(tr.tolist()) for _, _, tr, _ in seen["splits"]]
    assert [set(w.tolist()) for w in seen["weights"][:3]] == folds_rows
    assert len(seen["networks"]) == 2 * 3
    for fold_train, fold_test in seen["networks"]:
        assert not fold_train & fold_test and fold_train | fold_test == set(seen["groups"])


# -- weighted layers -------------------------------------------------------------------------------
def test_layer_weights_go_where_the_signal_is(tmp_path):
    store, rows = layer_signal_rows(tmp_path / "s", signal_layer=1)
    clf = SequenceClassifier("mean", "seq", "turn", store=store, pool="weighted")
    clf.fit(store, rows)
    info = clf.fit_info_["layer_weights"]
    assert info["layers"] == [1, 2, 3]
    weights = dict(zip(info["layers"], info["weights"], strict=True))
    assert weights[1] > 0.6 and weights[1] == max(weights.values())
    assert abs(sum(weights.values()) - 1.0) < 1e-5
    # auto finds the weighted layout better than the average or the top layer
    auto = SequenceClassifier("auto", "seq", "turn", store=store, inner_cv=3,
                              candidates=("mean",)).fit(store, rows)
    best = {lay: max(r["inner_accuracy"] for r in auto.fit_info_["search"]
                     if r["layout"] == lay) for lay in (TOP, EVERY, WEIGHTED)}
    assert best[WEIGHTED] > best[TOP] + 0.1 and best[WEIGHTED] > best[EVERY]
    assert auto.layout_.weighted


# -- saved auto heads ---------------------------------------------------------------------------
@pytest.mark.parametrize("given", [{}, {"pool": "weighted"}, {"candidates": ("transformer",)}])
def test_saved_auto_heads_predict_the_same(order_task, given):
    store, train, test = order_task
    clf = SequenceClassifier("auto", "seq", "turn", store=store, inner_cv=2,
                             **{"candidates": ("mean", "mean-max", "last"), **QUICK, **given})
    clf.fit(store, train)
    clf.save(store, "auto-saved", overwrite=True)
    back = load_head(store, "auto-saved")
    assert isinstance(back, SequenceClassifier)
    assert (back.kind_, back.layout_) == (clf.kind_, clf.layout_)
    np.testing.assert_allclose(back.predict_proba(store, test), clf.predict_proba(store, test),
                               atol=1e-6)
    doc = json.loads((store.root / "heads" / "auto-saved" / "head.json").read_text())
    assert doc["seq_head"] == clf.kind_ and doc["config"]["seq_head"] == "auto"
    assert doc["message_layout"]["pool"] == clf.layout_.pool
    assert doc["fit"]["chosen"]["name"] == clf.fit_info_["chosen"]["name"]
    assert len(doc["fit"]["search"]) == len(clf.fit_info_["search"])
    if clf.layout_.weighted:
        np.testing.assert_allclose(doc["message_layout"]["weights"], clf.layer_weights_,
                                   atol=1e-6)


# -- the command line ---------------------------------------------------------------------------
def test_cli_prints_what_auto_tried_and_chose(tmp_path, capsys):
    conversation_store(tmp_path / "s")
    store = str(tmp_path / "s")
    code, out, err = run_cli(capsys, "fit-head", "--store", store, "--group-by", "seq",
                             "--order-by", "turn", "--epochs", "1", "--cv", "2", "--out",
                             "conv", "--no-progress")
    assert code == 0, err
    doc = json.loads((tmp_path / "s" / "heads" / "conv" / "head.json").read_text())
    assert doc["config"]["seq_head"] == "auto"  # the default with --group-by
    won = doc["fit"]["chosen"]
    lines = out.splitlines()
    assert f"search    {len(doc['fit']['search'])} candidates · 3-fold inner CV on the " \
           "training sequences (groups whole) · accuracy, best C per cell" in lines
    chose = next(ln for ln in lines if ln.startswith("chose     "))
    assert chose.startswith(f"chose     {won['name']} (inner "
                            f"{won['inner_accuracy'] * 100:.2f} ± {won['std'] * 100:.2f}; ")
    header = next(ln for ln in lines if ln.startswith("layout "))
    assert header.split() == ["layout", *SEQUENCE_SEARCHED]
    for lay in (TOP, EVERY, WEIGHTED):
        assert any(ln.startswith(lay) for ln in lines), lay
    head = next(ln for ln in lines if ln.startswith("head      "))
    assert head.startswith(f"head      sequence {doc['seq_head']} (auto) · ")
    # explicit choices narrow the search, and --json carries it
    code, out, err = run_cli(capsys, "fit-head", "--store", store, "--group-by", "seq",
                             "--order-by", "turn", "--pool", "mean", "--layers", "1", "2", "3",
                             "--epochs", "1", "--cv", "2", "--json", "--no-progress", "--out",
                             "narrow")
    assert code == 0, err
    fit = json.loads(out)["fit"]
    assert {r["layout"] for r in fit["search"]} == {EVERY}
    assert fit["chosen"]["layout"] == EVERY


def test_compare_save_best_chooses_on_the_compared_layout(tmp_path, capsys):
    conversation_store(tmp_path / "s")
    code, out, err = run_cli(capsys, "compare", "--store", str(tmp_path / "s"), "--group-by",
                             "seq", "--seq-heads", "mean", "last", "--cv", "3", "--save-best",
                             "best", "--plot", str(tmp_path / "c.png"), "--no-progress")
    assert code == 0, err
    doc = json.loads((tmp_path / "s" / "heads" / "best" / "head.json").read_text())
    assert {r["layout"] for r in doc["fit"]["search"]} == {EVERY}
    assert {r["seq_head"] for r in doc["fit"]["search"]} == {"mean", "last"}


def test_without_a_pooling_a_head_reads_the_average_of_its_layers(order_task):
    store, train, _ = order_task
    clf = SequenceClassifier("mean-last", "seq", "turn", store=store).fit(store, train)
    assert clf.layout_.describe() == EVERY
    top = SequenceClassifier("mean-last", "seq", "turn", store=store, pool="mean")
    assert top.fit(store, train).layout_.describe() == TOP
    keys = pd.Series(keys_for(train["text"].tolist()))
    assert (keys == train["_key"].reset_index(drop=True)).all()
