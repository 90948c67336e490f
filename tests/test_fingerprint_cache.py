"""A pass that finds nothing new loads no model (its identity comes from the fingerprint cache),
changed model files are noticed, and a stale cache entry never writes features under the wrong
identity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from featstore.featurize import encoder as encoder_mod
from featstore.featurize import fingerprint_cache
from featstore.featurize.driver import featurize_texts
from featstore.featurize.errors import EncoderError
from featstore.featurize.options import FeaturizeOptions

TEXTS = ["my card was lost", "where is my money", "refund please", "the bank is good"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def loads(monkeypatch):
    """Counts Encoder constructions."""
    calls = []
    real = encoder_mod.Encoder.__init__

    def counting(self, *args, **kwargs):
        calls.append(args)
        real(self, *args, **kwargs)

    monkeypatch.setattr(encoder_mod.Encoder, "__init__", counting)
    return calls


def _options(model_dir: Path) -> FeaturizeOptions:
    return FeaturizeOptions(model=str(model_dir), device="cpu", laser=False)


def _copy_model(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_a_no_op_run_constructs_no_model(tiny_model_dir, tmp_path, loads, monkeypatch):
    store = tmp_path / "store"
    first = featurize_texts(TEXTS, store, _options(tiny_model_dir("bert")))
    assert first.new == 4 and len(loads) == 1  # one load serves identity and encoding

    def refuse(self, *args, **kwargs):
        raise AssertionError("a no-op run loaded the model")

    monkeypatch.setattr(encoder_mod.Encoder, "__init__", refuse)
    again = featurize_texts(TEXTS, store, _options(tiny_model_dir("bert")))
    assert (again.new, again.cached, again.encoder_id) == (0, 4, first.encoder_id)
    assert again.layers == first.layers and again.features == first.features


def test_new_texts_load_the_model_once_and_check_the_cached_identity(tiny_model_dir, tmp_path,
                                                                     loads):
    store = tmp_path / "store"
    first = featurize_texts(TEXTS[:2], store, _options(tiny_model_dir("bert")))
    more = featurize_texts(TEXTS, store, _options(tiny_model_dir("bert")))
    assert (more.new, more.encoder_id) == (2, first.encoder_id)
    assert len(loads) == 2  # the first pass's, and the second pass's engine (none to identify)


def test_changed_model_files_invalidate_the_cache(tiny_model_dir, tmp_path, loads):
    model = _copy_model(tiny_model_dir("bert"), tmp_path / "model")
    store = tmp_path / "store"
    first = featurize_texts(TEXTS, store, _options(model))
    assert len(loads) == 1
    # Same contents, new mtime: the model is loaded and hashed again, the features are reused.
    weights = next(model.glob("*.safetensors"))
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    same = featurize_texts(TEXTS, store, _options(model))
    assert len(loads) == 2 and (same.new, same.encoder_id) == (0, first.encoder_id)
    # New contents: a new encoder identity, every text encoded again.
    config = json.loads((model / "config.json").read_text())
    config["layer_norm_eps"] = 1e-5
    (model / "config.json").write_text(json.dumps(config))
    changed = featurize_texts(TEXTS, store, _options(model))
    assert changed.new == 4 and changed.encoder_id != first.encoder_id
    # Different settings are a different entry, not a stale hit.
    fewer = featurize_texts(TEXTS, store, FeaturizeOptions(model=str(model), device="cpu",
                                                           laser=False, layers="-1"))
    assert fewer.layers == 1 and fewer.new == 4


def test_a_stale_entry_is_caught_when_texts_are_new_and_then_forgotten(tiny_model_dir,
                                                                       tmp_path):
    store = tmp_path / "store"
    featurize_texts(TEXTS[:2], store, _options(tiny_model_dir("bert")))
    entries = list((fingerprint_cache.cache_dir() / "fingerprints").glob("*.json"))
    assert len(entries) == 1
    data = json.loads(entries[0].read_text())
    data["value"]["fingerprint"]["weights_sha256"] = "0" * 64  # files changed, stat did not
    entries[0].write_text(json.dumps(data))
    with pytest.raises(EncoderError, match="changed since this pass began.*nothing was written"):
        featurize_texts(TEXTS, tmp_path / "other", _options(tiny_model_dir("bert")))
    assert not entries[0].exists()
    # refused before the encoder's first shard: not even an empty encoder was committed
    assert json.loads((tmp_path / "other" / "manifest.json").read_text())["encoders"] == {}
    fixed = featurize_texts(TEXTS, store, _options(tiny_model_dir("bert")))
    assert (fixed.new, fixed.cached) == (2, 2)


def test_a_damaged_entry_is_a_miss(tiny_model_dir, tmp_path, loads):
    store = tmp_path / "store"
    featurize_texts(TEXTS, store, _options(tiny_model_dir("bert")))
    for entry in (fingerprint_cache.cache_dir() / "fingerprints").glob("*.json"):
        entry.write_text("{not json")
    again = featurize_texts(TEXTS, store, _options(tiny_model_dir("bert")))
    assert again.new == 0 and len(loads) == 2


def test_a_no_op_cli_run_imports_no_torch(tiny_model_dir, tmp_path):
    corpus = tmp_path / "c.csv"
    corpus.write_text("text\n" + "\n".join(TEXTS) + "\n")
    args = ["featurize", str(corpus), "--store", str(tmp_path / "s"), "--model",
            str(tiny_model_dir("bert")), "--no-laser", "--device", "cpu"]
    code = ("import sys; from featstore.cli import main; rc = main(sys.argv[1:]); "
            "print('torch' in sys.modules, rc)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    runs = [subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                           text=True, env=env, cwd=tmp_path, timeout=300) for _ in range(2)]
    assert [r.stdout.split()[-2:] for r in runs] == [["True", "0"], ["False", "0"]], \
        runs[1].stderr
