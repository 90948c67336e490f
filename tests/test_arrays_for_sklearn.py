"""Arrays that drop into scikit-learn: `features()` float32 by default (`dtype=` for float16) and
`layers="all"`; a store that says what it holds; learned layer weights as numpy; `encode` as
sentence-transformers' `encode` (its pooling, normalisation and sequence length honoured),
through the cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from test_heads_support import toy_store

import featstore
from featstore.cli import main
from featstore.heads import HeadClassifier
from featstore.store import StoreError

TEXTS = ["my card was stolen", "please refund the money", "the new card is lost",
         "transfer money to my account", "help with the bank balance", "a very good movie"]


def st_model(tiny_model_dir, directory: Path, pooling: str = "cls", normalize: bool = True,
             max_seq_length: int = 16) -> Path:
    """The tiny BERT laid out as a sentence-transformers model directory."""
    out = shutil.copytree(tiny_model_dir("bert"), directory)
    (out / "sentence_bert_config.json").write_text(json.dumps(
        {"max_seq_length": max_seq_length, "do_lower_case": False}))
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False}))
    modules = [{"idx": 0, "name": "0", "path": "",
                "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
        (out / "2_Normalize").mkdir()
    (out / "modules.json").write_text(json.dumps(modules))
    return out


def shard_count(root: Path) -> int:
    return len(list(root.rglob("shard-*.h5")))


def test_features_are_float32_and_feed_a_scaler_pipeline(tmp_path):
    root = tmp_path / "s"
    toy_store(root, n=240)
    store = featstore.open(root)
    x = store.features("toy", kind="mean", layers=-1)
    assert x.dtype == np.float32 and x.shape == (240, 16)
    half = store.features("toy", kind="mean", layers=-1, dtype="float16")
    assert half.dtype == np.float16 and np.array_equal(half.astype(np.float32), x)
    assert store.features("toy", "mean", layers=-1, dtype=None).dtype == np.float16  # as stored
    everything = store.features("toy", kind="cls", layers="all")
    assert everything.shape == (240, 4, 16) and everything.dtype == np.float32
    assert np.array_equal(everything, store.features("toy", kind="cls", layers=None))
    with pytest.raises(StoreError, match="layers='top'"):
        store.features("toy", layers="top")
    with pytest.raises(StoreError, match="floating point"):
        store.features("toy", dtype="int8")
    y = store.dataset("toy")["label"].to_numpy()
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    assert np.isfinite(pipe[0].scale_).all() and pipe.score(x, y) > 0.9


def test_a_store_says_what_it_holds(tmp_path, tiny_model_dir, capsys):
    root = tmp_path / "s"
    toy_store(root, n=30)
    store = featstore.open(root)
    text = repr(store)
    assert text.startswith(f"<featstore.Store {str(root)!r}: encoder toy-model (4 layers x 16")
    assert "datasets: toy (30 rows)" in text
    assert store.n_layers == 4 and store.width == 16
    info = store.encoder_info()
    assert (info.id, info.layers, info.name) == ("enc-toy", [0, 1, 2, 3], "toy-model")
    pd.DataFrame({"text": TEXTS}).to_csv(tmp_path / "c.csv", index=False)
    assert main(["featurize", "--store", str(root), "--model", str(tiny_model_dir("bert")),
                 "--no-laser", "--no-progress", str(tmp_path / "c.csv")]) == 0
    capsys.readouterr()
    store.refresh()
    with pytest.raises(StoreError, match="several encoders"):
        store.n_layers  # noqa: B018
    assert store.encoder_info(str(tiny_model_dir("bert"))).n_layers == 3  # embeddings + 2
    assert store.encoder_info(str(tiny_model_dir("bert"))).width == 32


def test_learned_layer_weights_come_back_as_numpy(tmp_path):
    store, _, _ = toy_store(tmp_path / "s", n=120)
    clf = HeadClassifier(pool="weighted", head="linear", layer_start=0, epochs=3, seeds=2,
                         store=store).fit("toy")
    w = clf.layer_weights_
    assert type(w) is np.ndarray and w.dtype == np.float64 and w.shape == (4,)
    assert abs(w.sum() - 1) < 1e-9
    per_seed = [net.pooling.layer_weights() for net in clf.networks_]
    assert np.allclose(w, np.mean(per_seed, axis=0))
    with pytest.raises(featstore.FeatstoreError, match="learns no layer weights"):
        HeadClassifier(pool="mean", C=1.0).fit(store, "toy").layer_weights_  # noqa: B018


def test_encode_matches_sentence_transformers_and_reads_the_cache(tiny_model_dir, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    model = st_model(tiny_model_dir, tmp_path / "st-tiny", pooling="cls", normalize=True)
    root = tmp_path / "s"
    vectors = featstore.encode(TEXTS, store=root, model=str(model))
    reference = st.SentenceTransformer(str(model), device="cpu").encode(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == reference.shape == (6, 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)  # the Normalize module
    cos = np.sum(vectors * reference, axis=1) / np.linalg.norm(reference, axis=1)
    assert cos.min() > 0.9999, cos  # float16 storage is all that separates them
    store = featstore.open(root)
    assert store.encoder_info().id.startswith("st-tiny")
    fp = store.manifest.encoders[store.encoder_info().id].fingerprint
    assert fp["max_length"] == 16  # sentence_bert_config.json's max_seq_length, not 64
    # through the cache: known texts are read, only new ones are encoded
    shards = shard_count(root)
    again = store.encode(TEXTS)
    assert np.array_equal(again, vectors) and shard_count(root) == shards
    one = store.encode("a brand new text about my card")
    assert one.shape == (32,) and shard_count(root) == shards + 1
    # other poolings and layers, unnormalised, are the stored rows as float32
    mean = store.encode(TEXTS, pool="mean", normalize=False)
    assert np.array_equal(mean, store.features(TEXTS, kind="mean", layers=-1))
    avg = store.encode(TEXTS, pool="mean", layers="all", normalize=False)
    assert np.allclose(avg, store.features(TEXTS, "mean", layers="all").mean(axis=1), atol=1e-6)
    with pytest.raises(featstore.FeatstoreError, match="fixed pooling"):
        store.encode(TEXTS, pool="attention")


def test_a_mean_pooled_model_without_normalize_is_encoded_so(tiny_model_dir, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    model = st_model(tiny_model_dir, tmp_path / "st-mean", pooling="mean", normalize=False)
    vectors = featstore.open(tmp_path / "s", create=True).encode(TEXTS, encoder=str(model))
    reference = st.SentenceTransformer(str(model), device="cpu").encode(TEXTS)
    assert np.allclose(vectors, reference, atol=2e-3 * np.abs(reference).max())


def test_a_store_keeps_the_length_its_encoder_was_featurized_with(tiny_model_dir, tmp_path,
                                                                   capsys):
    pd.DataFrame({"text": TEXTS[:3]}).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame({"text": TEXTS[3:]}).to_csv(tmp_path / "b.csv", index=False)
    root, model = tmp_path / "s", str(tiny_model_dir("bert"))
    assert main(["featurize", "--store", str(root), "--model", model, "--max-length", "32",
                 "--no-laser", "--no-progress", str(tmp_path / "a.csv")]) == 0
    assert main(["featurize", "--store", str(root), "--model", model, "--no-laser",
                 "--no-progress", str(tmp_path / "b.csv")]) == 0
    capsys.readouterr()
    sources = featstore.open(root).sources()
    assert len(sources) == 1 and sources[0]["fingerprint"]["max_length"] == 32
    assert sources[0]["rows"] == 6
