"""The OpenVINO runtime: the same stored values as the stock model within the compute dtype's
contract, recorded per shard, chosen by `auto` only for long passes, refused in one line where it
cannot serve, and its converted model cached (and re-made when the cache is damaged)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from consistency import assert_near_reference, assert_same_text_same_vector
from test_featurize_equivalence import TEXTS, reference

import featstore
from featstore.cli import main
from featstore.featurize import encoder as encoder_mod
from featstore.featurize import openvino_runtime
from featstore.featurize.driver import featurize_texts
from featstore.featurize.encoder import Encoder
from featstore.featurize.errors import EncoderError
from featstore.featurize.options import FeaturizeOptions

pytest.importorskip("openvino")
FEATURES = ("cls", "mean", "max")
BF16 = "BF16" in openvino_runtime.cpu_capabilities()


def _featurize(model_dir, store, compute="float32", runtime="openvino", texts=TEXTS, **kw):
    options = FeaturizeOptions(model=str(model_dir), device="cpu", laser=False,
                               compute_dtype=compute, runtime=runtime, **kw)
    return featurize_texts(texts, store, options)


def _stored(store, texts=TEXTS) -> dict[str, np.ndarray]:
    s = featstore.open(store)
    return {f: s.features(texts, f, None) for f in FEATURES}


def _runtimes(store) -> list[str]:
    s = featstore.open(store)
    return [sh.attrs.get("runtime") for sh in s.encoder_entry(s.resolve_encoder()).shards]


@pytest.mark.parametrize("kind", ["bert", "roberta", "distilbert"])
def test_openvino_stores_the_stock_models_values_in_float32(kind, tiny_model_dir, tmp_path):
    model = tiny_model_dir(kind)
    _featurize(model, tmp_path / "s", batch_tokens=40)  # several padded batches
    ref = reference(model, TEXTS)
    got = _stored(tmp_path / "s")
    for f in FEATURES:
        np.testing.assert_allclose(got[f].astype(np.float32), ref[f], atol=2e-2)
        assert_near_reference(got[f], ref[f], "float32", f"{kind} {f} on OpenVINO")
    assert _runtimes(tmp_path / "s") == ["openvino"]


@pytest.mark.skipif(not BF16, reason="OpenVINO computes bf16 only on CPUs with bf16 units")
def test_openvino_bfloat16_keeps_the_bfloat16_contract(tiny_model_dir, tmp_path):
    model = tiny_model_dir("bert")
    _featurize(model, tmp_path / "ov", compute="bfloat16")
    _featurize(model, tmp_path / "torch", compute="bfloat16", runtime="torch")
    ref = reference(model, TEXTS)
    ov, torch_rows = _stored(tmp_path / "ov"), _stored(tmp_path / "torch")
    for f in FEATURES:
        assert_near_reference(ov[f], ref[f], "bfloat16", f"OpenVINO bf16 {f}")
    assert_same_text_same_vector(ov, torch_rows, "bfloat16", "OpenVINO vs torch")
    s = featstore.open(tmp_path / "ov")
    assert s.encoder_entry(s.resolve_encoder()).shards[0].attrs == {
        "compute_dtype": "bfloat16", "runtime": "openvino"}


def test_auto_takes_openvino_only_for_long_passes(tiny_model_dir, tmp_path, monkeypatch):
    model = tiny_model_dir("bert")
    monkeypatch.setattr(encoder_mod, "OPENVINO_MIN_TEXTS", 8)
    _featurize(model, tmp_path / "s", runtime="auto", texts=TEXTS[:5])  # 5 < 8: torch
    _featurize(model, tmp_path / "s", runtime="auto")  # the 8 others: OpenVINO
    assert _runtimes(tmp_path / "s") == ["torch", "openvino"]
    enc = Encoder(str(model), device="cpu")
    assert enc.runtime is None  # settled by the first pass that uses it
    assert enc.prepare(3) == "torch" and enc.prepare(10_000) == "torch"  # settled once


@pytest.mark.parametrize("amx", [False, True])
@pytest.mark.parametrize("compute", ["float32", "bfloat16"])
def test_auto_leaves_bfloat16_on_amx_to_torch(amx, compute, tiny_model_dir, tmp_path,
                                              monkeypatch):
    """On AMX-BF16 torch's bf16 kernels matched OpenVINO's, so a long bf16 pass stays on
    torch there; float32 passes and bf16 without AMX take OpenVINO."""
    monkeypatch.setattr(encoder_mod, "OPENVINO_MIN_TEXTS", 4)
    monkeypatch.setattr("featstore.featurize.cpu_features.cpu_has_amx_bf16", lambda: amx)
    _featurize(tiny_model_dir("bert"), tmp_path / "s", compute=compute, runtime="auto")
    ov = not (amx and compute == "bfloat16") and (compute == "float32" or BF16)
    assert _runtimes(tmp_path / "s") == ["openvino" if ov else "torch"]
    assert not encoder_mod.auto_takes_openvino(10_000, "cuda", compute)
    assert not encoder_mod.auto_takes_openvino(3, "cpu", compute)


def test_a_pass_extended_on_another_runtime_agrees_within_the_contract(tiny_model_dir,
                                                                        tmp_path):
    model = tiny_model_dir("bert")
    _featurize(model, tmp_path / "a", runtime="torch")
    _featurize(model, tmp_path / "b", runtime="openvino")
    assert_same_text_same_vector(_stored(tmp_path / "b"), _stored(tmp_path / "a"), "float32",
                                 "OpenVINO vs torch")


def test_tokens_need_torch(tiny_model_dir, tmp_path, capsys):
    model = tiny_model_dir("bert")
    corpus = tmp_path / "c.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(corpus, index=False)
    args = ["featurize", str(corpus), "--store", str(tmp_path / "s"), "--model", str(model),
            "--no-laser", "--no-progress", "--tokens"]
    assert main([*args, "--runtime", "openvino"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --tokens needs --runtime torch (OpenVINO returns pooled rows only)"
    assert not (tmp_path / "s").exists()
    assert main([*args, "--runtime", "torch", "--json"]) == 0  # the advice, followed
    assert json.loads(capsys.readouterr().out)["new"] == len(TEXTS)


def test_a_model_openvino_cannot_serve_is_refused_in_one_line(tiny_model_dir, tmp_path,
                                                              capsys):
    model = tiny_model_dir("funnel")
    corpus = tmp_path / "c.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(corpus, index=False)
    args = ["featurize", str(corpus), "--store", str(tmp_path / "s"), "--model", str(model),
            "--no-laser", "--no-progress"]
    capsys.readouterr()  # building the tiny model may draw a bar
    assert main([*args, "--runtime", "openvino"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --runtime openvino cannot serve model") and "\n" not in err
    assert "Funnel pools its sequence" in err and err.endswith("pass --runtime torch")
    # refused inside the pass: the dataset table it had begun is not left behind
    assert not list((tmp_path / "s").rglob("*.part"))
    assert main([*args, "--runtime", "torch"]) == 0  # the advice, followed
    assert featstore.open(tmp_path / "s").verify() == []


def test_without_openvino_auto_uses_torch_and_asking_says_how_to_install(tiny_model_dir,
                                                                         monkeypatch):
    monkeypatch.setattr(openvino_runtime, "available", lambda: False)
    enc = Encoder(str(tiny_model_dir("bert")), device="cpu")
    assert enc.prepare(10**6) == "torch"
    with pytest.raises(EncoderError, match=r"pip install openvino\); pass --runtime torch"):
        Encoder(str(tiny_model_dir("bert")), device="cpu", runtime="openvino").prepare()


def test_the_converted_model_is_cached_and_a_damaged_cache_is_made_again(tiny_model_dir,
                                                                          tmp_path, monkeypatch,
                                                                          capfd):
    model = tiny_model_dir("bert")
    capfd.readouterr()  # building the tiny model may draw a bar
    first = Encoder(str(model), device="cpu", runtime="openvino")
    assert first.prepare() == "openvino"
    ir = list((tmp_path / "featstore-cache" / "openvino").glob("*/model.xml"))
    assert len(ir) == 1 and ir[0].with_suffix(".bin").is_file()
    ids = [first.tokenizer(t)["input_ids"] for t in TEXTS]
    want, _ = first.forward(ids)

    def no_conversion(*a, **k):
        raise AssertionError("converted again although the IR was cached")

    with monkeypatch.context() as mp:
        mp.setattr(openvino_runtime.OpenVinoForward, "_convert", no_conversion)
        again = Encoder(str(model), device="cpu", runtime="openvino")
        assert again.prepare() == "openvino"
        got, _ = again.forward(ids)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    ir[0].write_text("not an OpenVINO graph")
    third = Encoder(str(model), device="cpu", runtime="openvino")
    assert third.prepare() == "openvino"
    got, _ = third.forward(ids)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    assert "not an OpenVINO graph" not in ir[0].read_text()  # stored again
    assert capfd.readouterr().err == ""  # a damaged cache is never shown to a reader
