"""Compute precision: `auto` follows the CPU's matrix units, bfloat16 stays within a stated error
of the float32 reference, and every shard records the precision its vectors were computed in."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import featstore
from featstore.cli import main
from featstore.featurize import cpu_features
from featstore.featurize.driver import featurize_texts
from featstore.featurize.encoder import Encoder
from featstore.featurize.options import FeaturizeOptions
from featstore.store.shards import ShardReader

TEXTS = [
    "my card was lost",
    "please help me transfer money to my account",
    "i love this film very much it is great really great and good",
    "no",
    "where is my money",
    "the bank is good and my new card is great",
]


def _features(model_dir: Path, compute_dtype: str) -> tuple[Encoder, dict[str, np.ndarray]]:
    enc = Encoder(str(model_dir), device="cpu", dtype="float32", compute_dtype=compute_dtype,
                  runtime="torch")
    feats, _ = enc.forward([enc.tokenizer(t)["input_ids"] for t in TEXTS])
    return enc, feats


def test_bfloat16_stays_within_one_and_a_half_percent_of_the_float32_reference(tiny_model_dir):
    fp32_enc, ref = _features(tiny_model_dir("bert"), "float32")
    bf16_enc, got = _features(tiny_model_dir("bert"), "bfloat16")
    assert fp32_enc.compute_dtype_name == "float32"
    assert bf16_enc.compute_dtype_name == "bfloat16"
    assert bf16_enc.half_weights and next(bf16_enc.model.parameters()).dtype == torch.bfloat16
    for name in ("cls", "mean", "max"):
        x, y = ref[name], got[name]
        assert y.dtype == np.float32 and y.shape == x.shape
        # bf16 keeps 8 significant bits: per layer, no value moves more than 1.5% of that
        # layer's largest value, and every vector keeps its direction.
        scale = np.abs(x).max(axis=(0, 2), keepdims=True)
        err = np.abs(x - y) / scale
        assert err.max() < 0.015, name
        assert err.max() > 0, f"{name}: bfloat16 computed exactly what float32 did"
        cos = (x * y).sum(-1) / np.linalg.norm(x, axis=-1) / np.linalg.norm(y, axis=-1)
        assert cos.min() > 0.999, name


def test_half_mean_accumulates_in_float32():
    from featstore.featurize.reductions import reduce_hidden_states

    # 300 tokens of 1.0 and one of 2.0: a bf16 count or sum would round (bf16 holds 256 exactly)
    h = torch.ones(1, 301, 2, dtype=torch.bfloat16)
    h[0, 0] = 2.0
    mask = torch.ones(1, 301, dtype=torch.long)
    out = reduce_hidden_states([h], mask, ["cls", "mean", "max"], torch.zeros(1, dtype=torch.long))
    assert out["mean"].dtype == torch.float32
    np.testing.assert_allclose(out["mean"][0, 0].numpy(), [302 / 301] * 2, rtol=1e-6)
    assert out["max"][0, 0].tolist() == [2.0, 2.0] and out["cls"][0, 0].tolist() == [2.0, 2.0]


@pytest.mark.parametrize("native, expected", [(True, "bfloat16"), (False, "float32")])
def test_auto_follows_the_cpus_bf16_units(tiny_model_dir, monkeypatch, native, expected):
    monkeypatch.setattr(cpu_features, "cpu_has_native_bf16", lambda: native)
    enc = Encoder(str(tiny_model_dir("bert")), device="cpu", compute_dtype="auto",
                  runtime="torch")
    assert enc.compute_dtype_name == expected
    assert enc.half_weights == native
    assert (enc.fast_linears > 0) == (not native and torch.backends.mkldnn.is_available())


def test_cpu_flags_are_read_from_cpuinfo(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile\n")
    assert cpu_features._cpuinfo_flags(info) >= {"amx_bf16", "avx2"}
    assert cpu_features._cpuinfo_flags(tmp_path / "absent") == set()
    monkeypatch.setattr(cpu_features, "_torch_capabilities", lambda: {"avx512_bf16": True})
    assert cpu_features.detect_native_bf16()
    monkeypatch.setattr(cpu_features, "_torch_capabilities", lambda: {"avx2": True})
    monkeypatch.setattr(cpu_features, "_cpuinfo_flags", lambda: {"avx2", "fma"})
    assert not cpu_features.detect_native_bf16()
    monkeypatch.setattr(cpu_features, "_cpuinfo_flags", lambda: {"avx2", "avx512_bf16"})
    assert cpu_features.detect_native_bf16()


def test_each_shard_records_its_compute_dtype_and_bf16_reuses_fp32_features(tiny_model_dir,
                                                                            tmp_path, capsys):
    model_dir = tiny_model_dir("bert")
    store_dir = tmp_path / "store"
    for compute, texts in (("float32", TEXTS[:3]), ("bfloat16", TEXTS)):
        options = FeaturizeOptions(model=str(model_dir), device="cpu", laser=False,
                                   compute_dtype=compute, shard_rows=64)
        summary = featurize_texts(texts, store_dir, options)
        # the precision is not part of the encoder's identity: only the 3 new texts are encoded
        assert summary.new == 3
        assert summary.compute_dtypes == {compute: 3}
    shards = sorted((store_dir / "encoders").rglob("*.h5"), key=lambda p: p.stat().st_mtime_ns)
    recorded = []
    for path in shards:
        with ShardReader(path) as r:
            recorded.append((r.attr("compute_dtype"), sorted(r.keys().tolist())))
    assert [c for c, _ in recorded] == ["float32", "bfloat16"]
    store = featstore.open(store_dir)
    assert len(store.manifest.encoders) == 1
    enc_id = store.resolve_encoder()
    # the manifest records each shard's precision (and runtime: a pass this small uses
    # torch under `auto`), so `info` need not open the shards
    assert [s.attrs for s in store.encoder_entry(enc_id).shards] == [
        {"compute_dtype": "float32", "runtime": "torch"},
        {"compute_dtype": "bfloat16", "runtime": "torch"}]
    assert store.rows_by_attr(enc_id, "compute_dtype") == {"float32": 3, "bfloat16": 3}

    # a store extended on another CPU kind is kept together and reported where users look
    assert main(["info", "--store", str(store_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["encoders"][0]["compute_dtypes"] == {"float32": 3, "bfloat16": 3}
    assert info["encoders"][0]["dtype"] == "float16"
    assert main(["info", "--store", str(store_dir)]) == 0
    text = capsys.readouterr().out
    assert "stored=float16  computed=float32:3,bfloat16:3" in text
    assert "note: rows computed in float32 (3) and bfloat16 (3) agree within" in text


def test_info_reads_the_compute_dtype_of_shards_committed_before_the_manifest_held_it(
        tiny_model_dir, tmp_path, capsys):
    store_dir = tmp_path / "store"
    options = FeaturizeOptions(model=str(tiny_model_dir("bert")), device="cpu", laser=False,
                               compute_dtype="bfloat16", shard_rows=4)
    featurize_texts(TEXTS, store_dir, options)
    # a manifest as an older featstore wrote it: no `attrs` in its shard entries, no checksum
    path = store_dir / "manifest.json"
    data = json.loads(path.read_text())
    data.pop("checksum")
    for entry in data["encoders"].values():
        for shard in entry["shards"]:
            del shard["attrs"]
    path.write_text(json.dumps(data))
    store = featstore.open(store_dir)
    assert store.rows_by_attr(store.resolve_encoder(), "compute_dtype") == {"bfloat16": 6}
    assert main(["info", "--store", str(store_dir)]) == 0
    out = capsys.readouterr().out
    assert "computed=bfloat16" in out and "note:" not in out
    # a shard file that cannot be read is counted as such, and info still answers
    first = store.encoder_entry(store.resolve_encoder()).shards[0]
    (store_dir / first.file).write_bytes(b"not hdf5")
    counts = featstore.open(store_dir).rows_by_attr(store.resolve_encoder(), "compute_dtype")
    assert counts == {"unreadable": first.rows, "bfloat16": 6 - first.rows}


@pytest.mark.parametrize("side", ["right", "left"])
def test_batches_are_padded_as_the_tokenizer_pads_them(tiny_model_dir, side):
    enc = Encoder(str(tiny_model_dir("bert")), device="cpu")
    enc.tokenizer.padding_side = side
    rows = [enc.tokenizer(t)["input_ids"] for t in TEXTS]
    want = enc.tokenizer.pad({"input_ids": rows}, padding="longest", return_tensors="pt",
                             return_attention_mask=True)
    ids, mask = enc._pad(rows)
    assert torch.equal(ids, want["input_ids"]) and torch.equal(mask, want["attention_mask"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("side", ["right", "left"])
def test_reductions_equal_a_masked_reference(dtype, side):
    from featstore.featurize.reductions import reduce_hidden_states

    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([9, 9, 6, 2, 1])
    pos = torch.arange(9)
    mask = (pos < lengths[:, None]) if side == "right" else (pos >= 9 - lengths[:, None])
    h = (torch.randn(5, 9, 4, generator=g) * 3).to(dtype)
    h[~mask] = 1e4  # padding must never leak into mean or max
    cls_index = torch.zeros(5, dtype=torch.long)
    got = reduce_hidden_states([h, h * 2], mask.long(), ["cls", "mean", "max"], cls_index)
    for j, layer in enumerate((h, h * 2)):
        x = layer.double()
        for i in range(5):
            real = x[i][mask[i]]
            torch.testing.assert_close(got["mean"][i, j].double(), real.mean(0), rtol=1e-6,
                                       atol=1e-6)
            assert torch.equal(got["max"][i, j].double(), real.amax(0))
            assert torch.equal(got["cls"][i, j].double(), x[i, 0])
