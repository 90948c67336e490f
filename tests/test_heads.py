"""Heads learn from stored features, and the seeds' pitfalls stay fixed."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch
from test_heads_support import toy_store

from featstore.heads import HeadClassifier, HeadError, HeadRegressor, load_head, protocols
from featstore.heads import splits as splits_mod
from featstore.heads.normalizer import Normalizer
from featstore.heads.poolings import AttentionPooling, LSTMOverLayers, WeightedLayers, pad_tokens

FAST = {"epochs": 30, "hidden": 32, "patience": 30, "batch_size": 64}


def _split(store, name="toy"):
    df = store.dataset(name)
    return df[df.split == "train"].reset_index(drop=True), df[df.split == "test"]


@pytest.mark.parametrize("params", [
    {"pool": "mean", "head": "logreg"},
    {"pool": "mean-max", "head": "linear", **FAST},
    {"pool": "cls", "head": "mlp", **FAST},
    {"pool": "concat", "of": "mean", "head": "logreg"},
    {"pool": "weighted", "head": "mlp", "layer_start": 0, **FAST},
    {"pool": "lstm", "head": "linear", "layer_start": 0, **FAST},
    {"pool": "pooler", "head": "logreg"},
])
def test_heads_learn_separable_features(tmp_path, params):
    store, _, _ = toy_store(tmp_path / "s")
    train, test = _split(store)
    clf = HeadClassifier(**params).fit(store, train)
    assert clf.score(store, test) >= 0.9


@pytest.mark.parametrize("head", ["logreg", "mlp"])
def test_shuffled_labels_stay_near_chance(tmp_path, head):
    rng = np.random.default_rng(1)
    labels = [f"c{v}" for v in rng.permutation(np.arange(600) % 3)]
    store, _, _ = toy_store(tmp_path / "s", n=600, labels=labels)
    train, test = _split(store)
    params = {"head": head, **(FAST if head != "logreg" else {})}
    acc = HeadClassifier(pool="mean", **params).fit(store, train).score(store, test)
    assert acc < 0.48  # chance is 1/3; 150 test rows


def test_weighted_pooling_finds_the_informative_layer(tmp_path):
    store, _, _ = toy_store(tmp_path / "s", n=300, signal_layer=1, strength=2.0)
    train, test = _split(store)
    clf = HeadClassifier(pool="weighted", of="mean", head="linear", layer_start=0, lr=1e-2,
                         **{**FAST, "epochs": 60, "patience": 60}).fit(store, train)
    weights = clf.network_.pooling.weights().detach().numpy()
    assert clf.layers_ == [0, 1, 2, 3]
    assert int(np.argmax(weights)) == 1
    assert weights[1] > 0.5
    assert clf.score(store, test) > 0.9


def test_logreg_weighted_is_the_plain_layer_average(tmp_path):
    store, _, _ = toy_store(tmp_path / "s")
    train, _ = _split(store)
    clf = HeadClassifier(pool="weighted", head="logreg", layers=[2, 3], normalize="none",
                         C=1.0).fit(store, train)
    enc = store.resolve_encoder()
    raw = store.gather(enc, train["_key"].tolist(), "mean", [2, 3]).astype(np.float32)
    x = clf.inputs_.matrix(store, train["_key"].tolist())
    np.testing.assert_allclose(x, raw.mean(axis=1), rtol=1e-6)


@pytest.mark.parametrize("params", [
    {"pool": "mean", "head": "logreg"},
    {"pool": "mean-max", "head": "mlp", **FAST},
    {"pool": "weighted", "head": "linear", **FAST},
    {"pool": "lstm", "head": "mlp", **FAST},
    {"pool": "attention", "head": "linear", **FAST},
    {"pool": "mean", "head": "mlp", "fuse": ["laser"], "fuse_mode": "project", **FAST},
    {"pool": "cls-mean", "head": "linear", "fuse": ["laser"], "normalize": "l2", **FAST},
    {"pool": "mean", "head": "mlp", "seeds": 2, **FAST},
])
def test_save_load_round_trip_predicts_identically(tmp_path, params):
    store, _, _ = toy_store(tmp_path / "s", tokens=True, laser=True)
    train, test = _split(store)
    clf = HeadClassifier(**params).fit(store, train)
    clf.save(store, "h1", metrics={"accuracy": 1.0})
    again = load_head(store, "h1")
    np.testing.assert_array_equal(clf.predict_proba(store, test), again.predict_proba(store, test))
    assert list(clf.predict(store, test)) == list(again.predict(store, test))
    files = sorted(p.name for p in (tmp_path / "s" / "heads" / "h1").iterdir())
    weights = [f for f in files if re.fullmatch(r"head-[0-9a-f]{16}\.safetensors", f)]
    assert len(files) == 2 and "head.json" in files and len(weights) == 1
    raw = (tmp_path / "s" / "heads" / "h1" / weights[0]).read_bytes()
    assert b"pickle" not in raw and not raw.startswith(b"\x80")


def test_regression_learns_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    store0, y, texts = toy_store(tmp_path / "a", n=n)
    enc = store0.resolve_encoder()
    mean = store0.features(texts, "mean", -1, enc).astype(np.float64)
    target = mean[:, :4].sum(1) + 0.1 * rng.normal(size=n)
    df = store0.dataset("toy").assign(score=target)
    clf = HeadRegressor(pool="mean", head="linear", label_col="score", dropout=0.0, lr=1e-2,
                        **{**FAST, "epochs": 80, "patience": 80})
    tr, te = df[df.split == "train"], df[df.split == "test"]
    clf.fit(store0, tr)
    m = clf.evaluate(store0, te)
    assert m["pearson"] > 0.9 and m["spearman"] > 0.85 and m["rmse"] < np.std(target)
    clf.save(store0, "reg")
    np.testing.assert_array_equal(load_head(store0, "reg").predict(store0, te),
                                  clf.predict(store0, te))


def test_same_seed_same_predictions(tmp_path):
    store, _, _ = toy_store(tmp_path / "s")
    train, test = _split(store)
    a = HeadClassifier(pool="mean", head="mlp", seed=3, **FAST).fit(store, train)
    b = HeadClassifier(pool="mean", head="mlp", seed=3, **FAST).fit(store, train)
    np.testing.assert_array_equal(a.predict_proba(store, test), b.predict_proba(store, test))


# -- protocols ---------------------------------------------------------------------------------

def test_cv_folds_are_stratified():
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    folds = splits_mod.stratified_folds(y, 5, seed=0)
    assert len(folds) == 5
    seen = np.concatenate([te for _, te in folds])
    assert sorted(seen.tolist()) == list(range(100))
    for _, te in folds:
        assert np.bincount(y[te]).tolist() == [10, 6, 4]


def test_cv_protocol_without_split_column(tmp_path):
    store, _, _ = toy_store(tmp_path / "s", split=False)
    p = protocols.plan_evaluation(store)
    assert p.cv == 5 and p.eval is None and "stratified" in p.protocol
    r = protocols.run_protocol(store, p, {"pool": "mean", "head": "logreg", "C": 1.0})
    assert len(r.runs) == 5 and r.metrics["accuracy"] > 0.9
    assert r.head.fit_info_["rows"] == 240  # the kept head is refitted on every row


def test_overlap_between_train_and_eval_is_reported(tmp_path):
    texts = [f"text number {i}" for i in range(240)]
    store, _, _ = toy_store(tmp_path / "s")
    df = store.dataset("toy")
    # the eval set: the test rows plus one text that is also a training row
    from test_heads_support import build_store, make_features

    rng = np.random.default_rng(0)
    y = np.arange(240) % 3
    feats = make_features(y, rng)
    evtexts = [texts[0], texts[4], texts[8], texts[12], texts[1]]
    build_store(tmp_path / "s", texts, {"label": [f"c{v}" for v in y],
                                         "split": df.split.tolist()}, feats)
    import pyarrow as pa

    from featstore.store import StoreWriter, keys_for, open_store
    with StoreWriter(tmp_path / "s") as w:
        w.commit_dataset("ev", pa.table({"_key": keys_for(evtexts), "text": evtexts,
                                         "label": ["c0", "c1", "c2", "c0", "c1"]}),
                         text_column="text", source="x", encoders=["enc-toy"], skipped=0)
    store = open_store(tmp_path / "s")
    p = protocols.plan_evaluation(store, "toy", "ev")
    assert p.overlap == 1  # text 1 is a train row; texts 0 and 4 are test rows of "toy"
    r = protocols.run_protocol(store, p, {"pool": "mean", "head": "logreg", "C": 1.0})
    assert any("1 evaluation text(s) also occur" in n for n in r.notes)
    assert r.summary()["overlap"] == 1


def test_split_column_dev_is_used_for_early_stopping(tmp_path):
    n = 240
    splits = ["test" if i % 4 == 0 else "dev" if i % 4 == 1 else "train" for i in range(n)]
    store, _, _ = toy_store(tmp_path / "s", n=n)
    df = store.dataset("toy")
    import pyarrow as pa

    from featstore.store import StoreWriter, open_store
    with StoreWriter(tmp_path / "s") as w:
        tbl = pa.Table.from_pandas(df.assign(split=splits), preserve_index=False)
        w.commit_dataset("toy", tbl, text_column="text", source="x", encoders=["enc-toy"],
                         skipped=0)
    p = protocols.plan_evaluation(open_store(tmp_path / "s"))
    assert len(p.train) == 120 and len(p.eval) == 60 and len(p.valid) == 60
    assert "early stopping" in p.protocol


def test_few_shot_samples_exactly_n_per_label(tmp_path):
    y = np.array([0] * 30 + [1] * 20 + [2] * 3)
    idx = splits_mod.few_shot(y, 5, seed=0)
    assert np.bincount(y[idx]).tolist() == [5, 5, 3]
    assert not np.array_equal(idx, splits_mod.few_shot(y, 5, seed=1))
    store, _, _ = toy_store(tmp_path / "s")
    r = protocols.run_protocol(store, protocols.plan_evaluation(store),
                               {"pool": "mean", "head": "logreg"}, shots=4, repeats=3)
    assert len(r.runs) == 3 and "accuracy_std" in r.metrics
    assert r.head.fit_info_["rows"] == 12


# -- pitfalls ----------------------------------------------------------------------------------

def test_batch_of_one(tmp_path):
    store, _, texts = toy_store(tmp_path / "s", tokens=True)
    train, _ = _split(store)
    for params in ({"pool": "mean", "head": "logreg"}, {"pool": "lstm", **FAST},
                   {"pool": "attention", **FAST}, {"pool": "weighted", **FAST}):
        clf = HeadClassifier(**params).fit(store, train)
        one = clf.predict_proba(store, [texts[5]])
        assert one.shape == (1, 3)
        np.testing.assert_allclose(one[0], clf.predict_proba(store, texts[:8])[5], atol=1e-6)
    x = torch.randn(1, 4, 16)
    assert LSTMOverLayers(16, 8)(x).shape == (1, 8)
    assert WeightedLayers(4)(x).shape == (1, 16)
    assert AttentionPooling(16)(x, torch.ones(1, 4, dtype=torch.bool)).shape == (1, 16)


def test_lstm_and_attention_are_batch_first():
    """Each example's output depends on its own sequence only: a module reading [B, T, D] as
    [T, B, D] would mix examples, and the per-example outputs below would differ."""
    torch.manual_seed(0)
    x = torch.randn(5, 4, 16)  # 5 examples, 4 layers (or tokens), 16 wide
    lstm = LSTMOverLayers(16, 8).eval()
    att = AttentionPooling(16).eval()
    mask = torch.ones(5, 4, dtype=torch.bool)
    with torch.no_grad():
        batch_lstm, batch_att = lstm(x), att(x, mask)
        for i in range(5):
            torch.testing.assert_close(batch_lstm[i], lstm(x[i:i + 1])[0])
            torch.testing.assert_close(batch_att[i], att(x[i:i + 1], mask[i:i + 1])[0])
        # and the LSTM reads layers in order: reversing them changes the answer
        assert not torch.allclose(batch_lstm, lstm(x.flip(1)))
    assert lstm.lstm.batch_first


def test_attention_pooling_honours_the_mask():
    torch.manual_seed(0)
    att = AttentionPooling(16).eval()
    real = torch.randn(1, 3, 16)
    padded = torch.cat([real, 1e3 * torch.randn(1, 5, 16)], dim=1)
    mask = torch.tensor([[True] * 3 + [False] * 5])
    with torch.no_grad():
        torch.testing.assert_close(att(padded, mask), att(real, torch.ones(1, 3, dtype=bool)))
        weights = att.attention(padded, mask)
    assert float(weights[0, 3:].abs().sum()) == 0.0
    rows, m = pad_tokens([np.ones((2, 4), np.float32), np.ones((5, 4), np.float32)])
    assert rows.shape == (2, 5, 4) and m.sum(1).tolist() == [2, 5] and rows[0, 2:].sum() == 0


def test_fusion_normalises_sources_of_very_different_scales(tmp_path):
    """LASER-like vectors 100x smaller than the encoder's carry the class signal; the encoder's
    own features are pure noise. Per-source standardisation lets the small source speak."""
    store, _, _ = toy_store(tmp_path / "s", signal_layer=None, laser=True)
    train, test = _split(store)
    fused = HeadClassifier(pool="mean", head="logreg", fuse=["laser"], C=1.0).fit(store, train)
    assert fused.score(store, test) > 0.9
    x = fused.inputs_.matrix(store, test["_key"].tolist())
    enc_block, laser_block = x[:, :16], x[:, 16:]
    assert 0.5 < enc_block.std() < 2 and 0.5 < laser_block.std() < 2
    raw = HeadClassifier(pool="mean", head="logreg", fuse=["laser"], C=1.0,
                         normalize="none").fit(store, train)
    assert raw.score(store, test) < 0.6  # unnormalised, the tiny source is drowned out


def test_normalizer_never_writes_into_its_input():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    before = x.copy()
    for mode in ("standard", "l2", "none"):
        out = Normalizer(mode).fit(x).transform(x)
        assert out is not x
        np.testing.assert_array_equal(x, before)
    z = Normalizer("standard").fit(x).transform(x)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-5)


def test_cls_pooling_reads_the_stored_cls_rows_not_the_pooler(tmp_path):
    store, _, texts = toy_store(tmp_path / "s")
    clf = HeadClassifier(pool="cls", head="logreg", normalize="none", C=1.0)
    clf.fit(store, store.dataset("toy"))
    x = clf.inputs_.matrix(store, store.dataset("toy")["_key"].tolist()[:5])
    enc = store.resolve_encoder()
    np.testing.assert_array_equal(x, store.features(texts[:5], "cls", -1, enc).astype(np.float32))


# -- bad input ---------------------------------------------------------------------------------

def _err(fn) -> str:
    with pytest.raises(HeadError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_bad_inputs_are_one_line_errors(tmp_path):
    store, _, _ = toy_store(tmp_path / "s")
    df = store.dataset("toy")
    assert "unknown pooling 'bogus'" in _err(lambda: HeadClassifier(pool="bogus").fit(store, df))
    assert "no column 'nope' for label_col" in _err(
        lambda: HeadClassifier(label_col="nope").fit(store, df))
    assert "only one class" in _err(lambda: HeadClassifier().fit(store, df.assign(label="x")))
    nan = df.assign(label=[None] + df.label.tolist()[1:])
    assert "1 row(s) have no value" in _err(lambda: HeadClassifier().fit(store, nan))
    assert "needs token states" in _err(
        lambda: HeadClassifier(pool="attention").fit(store, df))
    assert "featurize --tokens" in _err(lambda: HeadClassifier(pool="attention").fit(store, df))
    assert "no LASER vectors" in _err(lambda: HeadClassifier(fuse=["laser"]).fit(store, df))
    assert "logreg" in _err(lambda: HeadClassifier(pool="lstm", head="logreg").fit(store, df))
    eval_only = df.assign(label=["c9" if s == "test" and i == 0 else v for i, (s, v) in
                                 enumerate(zip(df.split, df.label, strict=True))])
    train = eval_only[eval_only.split == "train"]
    test = eval_only[eval_only.split == "test"]
    clf = HeadClassifier(C=1.0).fit(store, train)
    assert "appear only in evaluation" in _err(lambda: clf.evaluate(store, test))
    fresh = pd.DataFrame({"text": ["never featurized text"], "label": ["c0"]})
    assert "not featurized" in _err(lambda: clf.predict(store, fresh))


def test_ensemble_averages_its_members(tmp_path):
    store, _, _ = toy_store(tmp_path / "s")
    train, test = _split(store)
    ens = HeadClassifier(pool="mean", head="mlp", seeds=3, valid_fraction=0,
                         **FAST).fit(store, train)
    assert len(ens.networks_) == 3
    single = HeadClassifier(pool="mean", head="mlp", seed=1, valid_fraction=0,
                            **FAST).fit(store, train)
    # member i is the single model trained with seed + i
    for a, b in zip(ens.networks_[1].state_dict().values(),
                    single.network_.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    x = ens.inputs_.batch(store, test["_key"].tolist())
    with torch.no_grad():
        members = [torch.softmax(n(x.enc).double(), 1) for n in ens.networks_]
    np.testing.assert_allclose(ens.predict_proba(store, test),
                               torch.stack(members).mean(0).numpy(), atol=1e-12)


def test_chunked_reads_and_statistics_match_whole_array_ones(tmp_path, monkeypatch):
    """Rows spread over several shards and read in small chunks come back in key order, pooled
    as the heads pool; chunked standardisation statistics equal the whole-array ones; lazily
    normalised minibatches equal the normalised matrix."""
    from featstore.heads import gather as feats_mod
    from featstore.heads import normalizer
    from featstore.heads.training import LazyInputs
    from featstore.store import StoreWriter, keys_for

    rng = np.random.default_rng(3)
    texts = [f"t{i}" for i in range(90)]
    keys = keys_for(texts)
    data = {f: (5 + 3 * rng.normal(size=(90, 3, 4))).astype(np.float16) for f in ("mean", "max")}
    with StoreWriter(tmp_path / "s") as w:
        w.ensure_encoder("e", {"kind": "encoder", "model": "m", "layers": [0, 1, 2],
                               "hidden": 4}, "float16", {"mean": [3, 4], "max": [3, 4]})
        for s in range(0, 90, 30):
            w.commit_shard("e", w.write_shard_file("e", keys[s:s + 30],
                                                   {f: a[s:s + 30] for f, a in data.items()}))
    from featstore.store import Store

    store = Store(tmp_path / "s")
    order = rng.permutation(90)
    want = [keys[i] for i in order]
    monkeypatch.setattr(feats_mod, "CHUNK_VALUES", 40)  # one shard per chunk
    both = np.concatenate([data["mean"], data["max"]], axis=2)[order]
    got = feats_mod.gather_features(store, "e", want, ["mean", "max"], [1, 2], "none")
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, both[:, 1:])
    np.testing.assert_array_equal(
        feats_mod.gather_features(store, "e", want, ["mean", "max"], [2], "mean-max"), both[:, 2])
    np.testing.assert_array_equal(
        feats_mod.gather_features(store, "e", want, ["mean"], [0, 2], "concat"),
        data["mean"][order][:, [0, 2]].reshape(90, -1))
    avg = feats_mod.gather_features(store, "e", want, ["mean"], [0, 1], "mean")
    assert avg.dtype == np.float32
    np.testing.assert_array_equal(avg, data["mean"][order][:, :2].astype(np.float32).mean(1))

    monkeypatch.setattr(normalizer, "FIT_CHUNK_VALUES", 50)  # chunks of 4 rows
    norm = Normalizer("standard").fit(got)
    np.testing.assert_allclose(norm.mean_, got.mean(0, dtype=np.float64), rtol=1e-6)
    np.testing.assert_allclose(norm.scale_, got.std(0, dtype=np.float64), rtol=1e-6)
    lazy = LazyInputs([got], [norm.transform], join=False).subset(np.arange(10, 40))
    whole = norm.transform(got)
    torch.testing.assert_close(lazy.take(np.array([3, 0])).enc,
                               torch.from_numpy(whole[[13, 10]]))
    flat = LazyInputs([got[:, 0], got[:, 1]], [np.asarray, np.asarray], join=True)
    np.testing.assert_array_equal(flat.matrix(slice(5, 20), chunk=4),
                                  got[5:20].reshape(15, -1).astype(np.float32))


def test_parameters_come_from_init_and_save_load_are_methods(tmp_path):
    """One parameter list: `__init__`'s signature gives get_params, clone and the saved config;
    `save` and `load` are methods, and `load` refuses a head of the other task."""
    import inspect

    from sklearn.base import clone

    signature = [p for p in inspect.signature(HeadClassifier.__init__).parameters if p != "self"]
    clf = HeadClassifier(pool="mean-max", head="mlp", **{**FAST, "hidden": 48})
    assert sorted(clf.get_params()) == sorted(signature)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params() and twin is not clf
    assert not hasattr(twin, "inputs_")
    with pytest.raises(HeadError, match="not fitted"):
        twin.predict_proba(None, ["x"])

    store, _, _ = toy_store(tmp_path / "s")
    train, test = _split(store)
    clf.fit(store, train)
    clf.save(store, "mm")
    back = HeadClassifier.load(store, "mm")
    assert isinstance(back, HeadClassifier)
    assert back.get_params() == {**clf.get_params(), "store": store}
    np.testing.assert_array_equal(back.predict_proba(store, test), clf.predict_proba(store, test))
    doc = load_head(store, "mm").saved_config()
    params = {k: v for k, v in clf.get_params().items() if k != "store"}
    assert {k: v for k, v in doc.items() if k != "task"} == {**params, "fuse": [],
                                                             "layers": None}
    with pytest.raises(HeadError, match="is a HeadClassifier, not a HeadRegressor"):
        HeadRegressor.load(store, "mm")
