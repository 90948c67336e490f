"""Sequence heads over stored message vectors: they learn order, [CLS] and time gaps where a
mean cannot; a sequence's output is its own; bad input is one line; heads round-trip."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from sequence_support import conversation_store, gap_rows, message_store, order_rows
from test_guarantees_support import run_cli, tree_digest

from featstore.heads import HeadError
from featstore.heads.sequence_estimator import SequenceClassifier
from featstore.heads.sequence_inputs import SequenceBatches, summarize_sequences
from featstore.heads.sequence_networks import build_sequence_network, masked_mean_max
from featstore.heads.sequences import group_rows, time_buckets
from featstore.heads.training import (
    TrainOptions,
    schedule_epochs,
    torch_threads,
    train_network,
)

# every epoch trained (no early stop): a small fixed budget that still learns each task
QUICK = {"epochs": 25, "valid_fraction": 0.0, "batch_size": 32}


@pytest.fixture(scope="module")
def messages(tmp_path_factory):
    store, texts, kinds = message_store(tmp_path_factory.mktemp("seq") / "store")
    return store, texts, kinds


@pytest.fixture(scope="module")
def order_task(messages):
    store, texts, kinds = messages
    return store, order_rows(texts, kinds, 240, seed=1), order_rows(texts, kinds, 200, seed=2)


# -- grouping -------------------------------------------------------------------------------------
def test_rows_group_into_ordered_sequences_with_one_label_each():
    df = pd.DataFrame({"g": ["b", "a", "b", "a", "b"], "t": [2, 9, 0, 1, 1],
                       "label": ["x", "y", "x", "y", "x"]})
    seqs = group_rows(df, "g", "t", label_col="label")
    assert seqs.groups == ["b", "a"]
    assert [r.tolist() for r in seqs.rows] == [[2, 4, 0], [3, 1]]
    assert seqs.labels.tolist() == ["x", "y"]
    unordered = group_rows(df, "g")
    assert [r.tolist() for r in unordered.rows] == [[0, 2, 4], [1, 3]]


def test_time_gaps_fall_in_log_buckets():
    buckets = time_buckets(np.array([100.0, 100.0, 101.0, 104.0, 104.0 + 86_400, 50.0]))
    # first event; gap 0 -> 1; gap 1 s -> 2; gap 3 s -> 3; a day -> 1 + floor(log2(86401)) = 17;
    # a negative gap (rows out of time order) counts as none
    assert buckets.tolist() == [0, 1, 2, 3, 17, 1]


def test_summaries_are_means_maxima_and_last_messages():
    m = np.array([[1.0, 0.0], [3.0, -4.0], [5.0, -2.0]], dtype=np.float32)
    rows = [np.array([0, 1]), np.array([2])]
    got = {k: summarize_sequences(k, m, rows) for k in ("mean", "mean-max", "mean-last", "last")}
    np.testing.assert_allclose(got["mean"], [[2, -2], [5, -2]])
    np.testing.assert_allclose(got["mean-max"], [[2, -2, 3, 0], [5, -2, 5, -2]])
    np.testing.assert_allclose(got["mean-last"], [[2, -2, 3, -4], [5, -2, 5, -2]])
    np.testing.assert_allclose(got["last"], [[3, -4], [5, -2]])
    x = torch.tensor([[[1.0, -5.0], [3.0, -1.0], [99.0, 99.0]]])
    got = masked_mean_max(x, torch.tensor([[True, True, False]]))
    np.testing.assert_allclose(got.numpy(), [[2.0, -3.0, 3.0, -1.0]])  # padding never counts


# -- what the heads learn --------------------------------------------------------------------
def test_transformer_learns_order_where_the_mean_cannot(order_task):
    store, train, test = order_task
    transformer = SequenceClassifier("transformer", "seq", "turn", store=store, **QUICK)
    assert transformer.fit(store, train).score(store, test) >= 0.95
    mean = SequenceClassifier("mean", "seq", "turn", store=store).fit(store, train)
    assert mean.score(store, test) <= 0.60
    # auto picks by inner CV on the training sequences: the transformer, not the mean
    auto = SequenceClassifier("auto", "seq", "turn", store=store, inner_cv=2,
                              candidates=("mean", "transformer"), **QUICK).fit(store, train)
    assert auto.kind_ == "transformer"
    assert auto.fit_info_["inner_cv"]["transformer"] > auto.fit_info_["inner_cv"]["mean"] + 0.2


@pytest.mark.parametrize("seed", [0, 1])
def test_the_default_schedule_learns_order_from_a_few_hundred_sequences(order_task, seed):
    """240 training sequences are 4 minibatches an epoch: 10 epochs (40 steps) left the
    transformer at ~85%; its default of at least 160 steps trains 40 epochs. The GRU, which
    reads order from its recurrence, keeps the plain 10."""
    store, train, test = order_task
    transformer = SequenceClassifier("transformer", "seq", "turn", store=store, seed=seed)
    assert transformer.fit(store, train).score(store, test) >= 0.95
    assert transformer.fit_info_["epochs_run"] == 40
    gru = SequenceClassifier("gru", "seq", "turn", store=store, seed=seed).fit(store, train)
    assert gru.fit_info_["epochs_run"] == 10 and gru.score(store, test) >= 0.95


def test_a_schedule_of_at_least_min_steps_adds_epochs_only_where_they_are_fewer():
    for rows, batch, epochs, min_steps, want in [
            (240, 64, 10, 160, 40),     # 4 steps an epoch
            (756, 64, 10, 160, 14),     # 12 steps an epoch: 13.3, rounded up
            (5000, 64, 10, 160, 10),    # 79 steps an epoch: epochs already give more
            (240, 64, 10, 0, 10),       # no minimum
            (10, 64, 3, 160, 160),      # one minibatch (of all 10 rows) an epoch
            (0, 64, 5, 160, 160)]:      # nothing to train on: one (empty) step an epoch
        opts = TrainOptions(epochs=epochs, min_steps=min_steps, batch_size=batch)
        assert schedule_epochs(opts, rows) == want, (rows, batch, epochs, min_steps)


def _order_batches(store, rows, time_col=None):
    clf = SequenceClassifier("mean", "seq", "turn", time_col, store=store, C=1.0).fit(store, rows)
    df, seqs, _ = clf.sequences(store, rows)
    matrix = clf.inputs_.matrix(store, df["_key"].tolist())
    y = torch.from_numpy(clf.labels_.encode(seqs.labels, "rows"))
    return SequenceBatches(matrix, seqs.rows, seqs.times, 64), y, matrix


def test_cls_path_alone_learns_what_only_attention_can_see(order_task):
    """No skip path: only the [CLS] output reaches the classifier, and the order task needs
    attention over positions; the training loss must fall far below chance (ln 2)."""
    store, train, _ = order_task
    batches, y, matrix = _order_batches(store, train)
    torch.manual_seed(0)
    net = build_sequence_network("transformer", matrix.shape[1], 2, 32, 1, 4, 64, False, 0.0,
                                 skip=False)
    with torch_threads(1):
        train_network(net, "classification", batches, y, None,
                      TrainOptions(epochs=25, lr=3e-3, batch_size=32, seed=0))
    net.eval()
    with torch.no_grad():
        part = batches.take(np.arange(len(batches)))
        loss = float(torch.nn.functional.cross_entropy(net(part.enc, part.sources, part.mask), y))
    assert loss < 0.25 * math.log(2)


def test_time_gaps_decide_only_with_the_time_column(messages):
    store, texts, kinds = messages
    train, test = gap_rows(texts, kinds, 200, seed=3), gap_rows(texts, kinds, 120, seed=4)
    timed = SequenceClassifier("transformer", "seq", "turn", "at", store=store, **QUICK)
    assert timed.fit(store, train).score(store, test) >= 0.95
    blind = SequenceClassifier("transformer", "seq", "turn", store=store, **QUICK)
    assert blind.fit(store, train).score(store, test) <= 0.65


# -- a sequence's output is its own -------------------------------------------------------------
@pytest.mark.parametrize("kind", ["transformer", "gru"])
def test_output_ignores_batch_neighbours_batch_size_and_padding(order_task, kind):
    store, train, _ = order_task
    rows = train.assign(at=np.arange(len(train), dtype=float) ** 1.5)
    batches, _, matrix = _order_batches(store, rows, time_col="at")
    torch.manual_seed(1)
    net = build_sequence_network(kind, matrix.shape[1], 2, 32, 2, 4, 64, True, 0.3).eval()
    n = 40
    with torch.no_grad():
        alone = torch.cat([net(p.enc, p.sources, p.mask) for p in
                           (batches.take(np.array([i])) for i in range(n))])
        together = net(*_unpack(batches.take(np.arange(n))))
        shuffled_order = np.random.default_rng(0).permutation(n)
        shuffled = net(*_unpack(batches.take(shuffled_order)))
        part = batches.take(np.arange(n))
        extra = 7  # the same batch padded to a longer length
        enc = torch.cat([part.enc, torch.randn(n, extra, part.enc.shape[2]) * 50], dim=1)
        mask = torch.cat([part.mask, torch.zeros(n, extra, dtype=torch.bool)], dim=1)
        gaps = torch.cat([part.sources[0], torch.randint(0, 30, (n, extra))], dim=1)
        padded = net(enc, [gaps], mask)
    np.testing.assert_allclose(together.numpy(), alone.numpy(), atol=1e-5)
    np.testing.assert_allclose(shuffled.numpy(), alone[shuffled_order].numpy(), atol=1e-5)
    np.testing.assert_allclose(padded.numpy(), alone.numpy(), atol=1e-5)
    assert float(alone.std(0).min()) > 1e-3  # outputs really differ between sequences


def store_rows(root):
    from featstore.store import open_store

    return open_store(root).dataset("messages")


def _unpack(part):
    return part.enc, part.sources, part.mask


@pytest.mark.parametrize("kind", ["transformer", "gru", "mean"])
def test_length_one_sequences_and_a_batch_of_one(messages, kind):
    store, texts, kinds = messages
    rows = pd.DataFrame({"seq": [f"s{i}" for i in range(40)], "text": texts[:40],
                         "label": ["a" if k == 0 else "b" for k in kinds[:40]]})
    clf = SequenceClassifier(kind, "seq", store=store, **({} if kind == "mean" else QUICK))
    clf.fit(store, rows)
    proba = clf.predict_proba(store, rows)
    assert proba.shape == (40, 2)
    one = clf.predict_proba(store, rows.iloc[[7]])
    np.testing.assert_allclose(one, proba[[7]], atol=1e-6)
    assert clf.score(store, rows) >= 0.9  # kind 0 against the rest, one message each


# -- saved heads, predict, compare ----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["transformer", "mean-last"])
def test_saved_heads_predict_as_before(order_task, kind):
    store, train, test = order_task
    clf = SequenceClassifier(kind, "seq", "turn", store=store, epochs=3).fit(store, train)
    path = clf.save(store, f"order-{kind}")
    assert sorted(p.suffix for p in path.iterdir()) == [".json", ".safetensors"]
    back = SequenceClassifier.load(store, f"order-{kind}")
    np.testing.assert_allclose(back.predict_proba(store, test), clf.predict_proba(store, test),
                               atol=1e-6)
    assert back.kind_ == kind


def test_cli_fits_predicts_and_compares_sequence_heads(tmp_path, capsys):
    conversation_store(tmp_path / "s")
    store = str(tmp_path / "s")
    code, out, err = run_cli(capsys, "fit-head", "--store", store, "--group-by", "seq",
                             "--order-by", "turn", "--seq-head", "gru", "--cv", "3",
                             "--epochs", "2", "--out", "conv", "--json", "--no-progress")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["sequences"] == 30 and doc["seq_head"] == "gru" and doc["runs"] == 3
    code, out, err = run_cli(capsys, "predict", "messages", "--store", store, "--head", "conv",
                             "--no-progress")
    assert code == 0, err
    pred = pd.read_csv(io.StringIO(out))
    assert len(pred) == 30 and set(pred["seq"]) == {f"s{i}" for i in range(30)}
    assert (pred["messages"] == 4).all()
    np.testing.assert_allclose(pred["p_no"] + pred["p_yes"], 1.0, atol=1e-5)
    rows = store_rows(tmp_path / "s")  # a file of rows: the same groups, predicted the same
    rows[rows.seq.isin(["s3", "s8"])][["seq", "turn", "text"]].to_csv(tmp_path / "r.csv",
                                                                    index=False)
    code, out, err = run_cli(capsys, "predict", str(tmp_path / "r.csv"), "--store", store,
                             "--head", "conv", "--no-progress")
    assert code == 0, err
    again = pd.read_csv(io.StringIO(out)).set_index("seq")
    assert sorted(again.index) == ["s3", "s8"]
    np.testing.assert_allclose(again["p_yes"], pred.set_index("seq").loc[again.index, "p_yes"],
                               atol=1e-6)
    code, out, err = run_cli(capsys, "compare", "--store", store, "--group-by", "seq",
                             "--seq-heads", "mean", "last", "--cv", "3", "--json",
                             "--plot", str(tmp_path / "c.png"), "--no-progress")
    assert code == 0, err
    board = json.loads(out)["leaderboard"]
    assert {e["name"] for e in board} == {"mean", "last"}
    assert board[0]["accuracy"] >= board[1]["accuracy"]
    before = (tmp_path / "s" / "heads" / "conv" / "head.json").read_bytes()
    code, out, err = run_cli(capsys, "fit-head", "--store", store, "--group-by", "seq",
                             "--seq-head", "mean", "--cv", "3", "--out", "conv", "--no-progress")
    assert code == 2 and "--overwrite" in err
    assert (tmp_path / "s" / "heads" / "conv" / "head.json").read_bytes() == before
    code, out, err = run_cli(capsys, "compare", "--store", store, "--group-by", "seq",
                             "--seq-heads", "mean", "last", "--cv", "3", "--save-best", "best",
                             "--plot", str(tmp_path / "c.png"), "--overwrite", "--no-progress")
    assert code == 0, err
    doc = json.loads((tmp_path / "s" / "heads" / "best" / "head.json").read_text())
    # chosen by inner CV on the training sequences among the compared heads
    assert doc["config"]["seq_head"] == "auto" and doc["seq_head"] in ("mean", "last")
    assert set(doc["fit"]["inner_cv"]) == {"mean", "last"}


# -- bad input: one line, store untouched ---------------------------------------------------------
@pytest.mark.parametrize(("extra", "expected"), [
    (["--group-by", "nope"], "no column 'nope' for --group-by"),
    (["--group-by", "seq", "--order-by", "when"], "no column 'when' for --order-by"),
    (["--group-by", "seq", "--time-col", "when"], "no column 'when' for --time-col"),
    (["--group-by", "seq", "--label-col", "mixed"], "labels vary within group 's1'"),
    (["--seq-head", "gru"], "--seq-head applies to sequences"),
    (["--order-by", "turn"], "--order-by applies to sequences"),
    (["--group-by", "seq", "--shots", "2"], "--shots applies to per-text heads"),
    (["--group-by", "seq", "--pool", "lstm"], "sequence heads read one fixed vector"),
    (["--group-by", "seq", "--cv", "20"], "--cv 20 needs at least 20 examples"),
])
def test_bad_sequence_input_is_one_line(tmp_path, capsys, extra, expected):
    conversation_store(tmp_path / "s")
    before = tree_digest(tmp_path / "s")
    code, out, err = run_cli(capsys, "fit-head", "--store", str(tmp_path / "s"), *extra,
                             "--no-progress")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0]
    assert tree_digest(tmp_path / "s") == before


def test_labels_file_keyed_by_group(tmp_path, capsys):
    conversation_store(tmp_path / "s")
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"seq": [f"s{i}" for i in range(30)],
                  "outcome": ["up" if i % 3 else "down" for i in range(30)]}).to_csv(labels,
                                                                                   index=False)
    args = ["fit-head", "--store", str(tmp_path / "s"), "--group-by", "seq", "--labels",
            str(labels), "--label-col", "outcome", "--seq-head", "mean", "--cv", "3", "--json",
            "--no-progress", "--out", "by-file"]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert SequenceClassifier.load(tmp_path / "s", "by-file").classes_.tolist() == ["down", "up"]
    # a labelled group with no rows is an empty sequence; a group without a label is refused
    pd.DataFrame({"seq": [f"s{i}" for i in range(31)],
                  "outcome": ["up" if i % 3 else "down" for i in range(31)]}).to_csv(labels,
                                                                                   index=False)
    code, _, err = run_cli(capsys, *args, "--overwrite")  # the head name is checked first
    assert code == 2 and "group 's30'" in err and "empty sequence" in err
    pd.DataFrame({"seq": ["s0", "s1"], "outcome": ["up", "down"]}).to_csv(labels, index=False)
    code, _, err = run_cli(capsys, *args, "--overwrite")
    assert code == 2 and "no label for group 's2'" in err


def test_a_group_without_stored_vectors_is_named(messages):
    store, texts, _ = messages
    rows = pd.DataFrame({"seq": ["a", "a", "b", "c", "c"],
                         "_key": ["x"] * 5, "label": ["p", "p", "q", "p", "p"]})
    rows.loc[[0, 1, 2], "_key"] = [store.dataset("messages")["_key"][i] for i in range(3)]
    with pytest.raises(HeadError, match="group 'c' has no stored vectors"):
        SequenceClassifier("mean", "seq", store=store).fit(store, rows)
    with pytest.raises(HeadError, match="no rows"):
        SequenceClassifier("mean", "seq", store=store).fit(store, rows.iloc[:0])
