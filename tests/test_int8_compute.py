"""`--compute-dtype int8`: OpenVINO with the matrix products quantized by NNCF on featstore's
fixed calibration texts. Its vectors stay within the int8 bound of the stock float32 model (and
really are quantized), do not depend on the batch, are recorded per shard; the quantized graph
is made once per model and cached; what int8 cannot honour is refused in one line before
anything is written, and the advice works."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from consistency import assert_near_reference
from test_featurize_equivalence import TEXTS, reference

import featstore
from featstore.cli import main
from featstore.featurize import calibration, openvino_runtime, precision
from featstore.featurize.driver import featurize_texts
from featstore.featurize.encoder import Encoder
from featstore.featurize.errors import EncoderError
from featstore.featurize.options import FeaturizeOptions
from featstore.featurize.precision import Bound, deviation

pytest.importorskip("openvino")
pytest.importorskip("nncf")
FEATURES = ("cls", "mean", "max")


def _featurize(model_dir, store, texts=TEXTS, **kw):
    options = FeaturizeOptions(model=str(model_dir), device="cpu", laser=False,
                               compute_dtype="int8", **kw)
    return featurize_texts(texts, store, options)


def _stored(store, texts=TEXTS) -> dict[str, np.ndarray]:
    s = featstore.open(store)
    return {f: s.features(texts, f, None) for f in FEATURES}


@pytest.mark.parametrize("kind", ["bert", "roberta", "mpnet"])
def test_int8_vectors_are_quantized_within_their_bound_and_recorded(kind, tiny_model_dir,
                                                                     tmp_path):
    model = tiny_model_dir(kind)
    summary = _featurize(model, tmp_path / "s", batch_tokens=40)  # several padded batches
    assert summary.compute_dtypes == {"int8": len(TEXTS)}
    ref = reference(model, TEXTS)
    got = _stored(tmp_path / "s")
    for f in FEATURES:
        assert_near_reference(got[f], ref[f], "int8", f"{kind} {f} in int8")
    # really quantized: further from float32 than float16 storage of a float32 pass could be
    assert max(deviation(ref[f], got[f]).max_error for f in FEATURES) > 5e-3
    s = featstore.open(tmp_path / "s")
    assert {tuple(sorted(sh.attrs.items())) for sh in
            s.encoder_entry(s.resolve_encoder()).shards} == {
        (("compute_dtype", "int8"), ("runtime", "openvino"))}
    graphs = list((tmp_path / "featstore-cache" / "openvino").glob("*/model.xml"))
    assert len(graphs) == 1 and "FakeQuantize" in graphs[0].read_text()


def test_a_texts_int8_vector_does_not_depend_on_its_batch(tiny_model_dir, tmp_path):
    """The quantization ranges are fixed in the graph, so another batching moves a vector only
    by the rounding of what is not quantized: far inside the int8 bound."""
    model = tiny_model_dir("bert")
    _featurize(model, tmp_path / "a", batch_tokens=40)
    _featurize(model, tmp_path / "b", texts=TEXTS[::-1], batch_tokens=4096)
    a, b = _stored(tmp_path / "a"), _stored(tmp_path / "b")
    for f in FEATURES:
        dev = deviation(a[f], b[f])
        assert dev.within(precision.BETWEEN_RUNS["bfloat16"]), f"{f}: {dev}"


def test_the_quantized_graph_is_made_once_per_model_and_cached(tiny_model_dir, tmp_path,
                                                               monkeypatch):
    model = tiny_model_dir("bert")
    first = Encoder(str(model), device="cpu", compute_dtype="int8")
    assert first.prepare() == "openvino" and first.compute_dtype_name == "int8"
    ids = [first.tokenizer(t)["input_ids"] for t in TEXTS]
    want, _ = first.forward(ids)

    def no_calibration(*a, **k):
        raise AssertionError("quantized again although the graph was cached")

    with monkeypatch.context() as mp:
        mp.setattr(openvino_runtime, "_quantize", no_calibration)
        mp.setattr(Encoder, "_calibration_batches", no_calibration)
        again = Encoder(str(model), device="cpu", compute_dtype="int8")
        assert again.prepare() == "openvino"
        got, _ = again.forward(ids)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    # the float32 graph of the same model is another cache entry, not the quantized one
    f32 = Encoder(str(model), device="cpu", compute_dtype="float32", runtime="openvino")
    f32.prepare()
    assert len(list((tmp_path / "featstore-cache" / "openvino").glob("*/model.xml"))) == 2
    plain, _ = f32.forward(ids)
    assert any(not np.array_equal(plain[k], want[k]) for k in want)


def test_calibration_measures_each_text_alone_and_longer_joined_ones():
    samples = calibration.samples()
    assert set(calibration.TEXTS) <= set(samples)
    joined = [s for s in samples if s not in calibration.TEXTS]
    assert joined and all(len(s) > 5 * max(map(len, calibration.TEXTS[:3])) for s in joined)
    assert len(set(calibration.TEXTS)) == len(calibration.TEXTS)
    assert calibration.digest() == calibration.digest() and len(calibration.digest()) == 16


def test_an_encoder_batch_is_padded_as_one_text_per_calibration_batch(tiny_model_dir):
    enc = Encoder(str(tiny_model_dir("bert")), device="cpu", compute_dtype="int8")
    batches = enc._calibration_batches()
    assert len(batches) == len(calibration.samples())
    for ids, mask in batches:
        assert ids.shape[0] == 1 and mask.all()  # no padding row or column
        assert ids.shape[1] <= enc.max_length


def test_a_quantization_outside_the_bound_is_refused_in_one_line(tiny_model_dir, monkeypatch):
    monkeypatch.setitem(precision.TO_REFERENCE, "int8", Bound(max_error=0.0, min_cosine=1.0))
    monkeypatch.setattr("featstore.featurize.encoder.TO_REFERENCE", precision.TO_REFERENCE)
    enc = Encoder(str(tiny_model_dir("bert")), device="cpu", compute_dtype="int8")
    with pytest.raises(EncoderError) as info:
        enc.prepare()
    msg = str(info.value)
    assert msg.startswith("--compute-dtype int8 cannot serve model") and "\n" not in msg
    assert "differ from torch's" in msg and msg.endswith("pass --compute-dtype auto")


def _cli(tmp_path, model, *extra):
    corpus = tmp_path / "c.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(corpus, index=False)
    return ["featurize", str(corpus), "--store", str(tmp_path / "s"), "--model", str(model),
            "--no-laser", "--no-progress", "--compute-dtype", "int8", *extra]


@pytest.mark.parametrize("flags, said, advice", [
    (["--runtime", "torch"], "--runtime torch cannot use", ["--runtime", "auto"]),
    (["--tokens"], "--tokens cannot use", []),
    (["--device", "cuda"], "runs on the CPU, not --device cuda", ["--device", "cpu"]),
])
def test_what_int8_cannot_honour_is_refused_before_anything_is_written(
        flags, said, advice, tiny_model_dir, tmp_path, capsys):
    model = tiny_model_dir("bert")
    capsys.readouterr()  # building the tiny model may draw a bar
    assert main(_cli(tmp_path, model, *flags)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --compute-dtype int8") and "\n" not in err and said in err
    assert not (tmp_path / "s").exists()
    assert main([*_cli(tmp_path, model, *advice), "--json"]) == 0  # the advice, followed
    assert json.loads(capsys.readouterr().out)["compute_dtypes"] == {"int8": len(TEXTS)}


def test_without_nncf_int8_says_how_to_install_it(tiny_model_dir, tmp_path, capsys,
                                                  monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "nncf" else real(name, *a))
    model = tiny_model_dir("bert")
    capsys.readouterr()
    assert main(_cli(tmp_path, model)) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: --compute-dtype int8 needs nncf (pip install nncf), or pass "
                   "--compute-dtype auto")
    assert not (tmp_path / "s").exists()
    assert main([*_cli(tmp_path, model)[:-1], "auto"]) == 0  # the other advice, followed


def test_a_model_int8_cannot_serve_is_refused_in_one_line(tiny_model_dir, tmp_path, capsys):
    model = tiny_model_dir("funnel")
    capsys.readouterr()
    assert main(_cli(tmp_path, model)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --compute-dtype int8 cannot serve model") and "\n" not in err
    assert "Funnel pools its sequence" in err and err.endswith("pass --compute-dtype auto")
    assert main([*_cli(tmp_path, model)[:-1], "auto"]) == 0  # the advice, followed
    assert featstore.open(tmp_path / "s").verify() == []


def test_int8_on_a_machine_with_a_gpu_still_runs_on_the_cpu(tiny_model_dir, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    enc = Encoder(str(tiny_model_dir("bert")), compute_dtype="int8")
    assert enc.device.type == "cpu"
