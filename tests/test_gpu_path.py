"""The GPU code path, exercised on CPU: transfers, half-precision autocast, and the MB/s report.

No GPU is needed: the pinned-memory branch is taken only on CUDA, and autocast is the same
torch.autocast call on either device (bfloat16 here, float16 on a GPU by default).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from featstore.cli import main
from featstore.featurize.driver import featurize_corpus
from featstore.featurize.encoder import to_device, to_host
from featstore.featurize.options import FeaturizeOptions
from featstore.store import Store

TEXTS = ["my card was stolen", "please refund the transfer", "what is my balance",
         "the new card is good " * 12]


def test_transfers_on_cpu_copy_values_and_do_not_pin():
    t = torch.arange(12, dtype=torch.int64).reshape(3, 4)
    moved = to_device(t, torch.device("cpu"))
    assert not moved.is_pinned()
    assert torch.equal(moved, t)
    out = to_host({"a": torch.ones(2, 3, dtype=torch.float16), "b": t})
    assert out["a"].dtype == np.float16 and out["a"].shape == (2, 3)
    np.testing.assert_array_equal(out["b"], t.numpy())


def _corpus(tmp_path):
    path = tmp_path / "c.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(path, index=False)
    return path


def test_half_precision_autocast_stays_within_storage_tolerance(tiny_model_dir, tmp_path):
    model = str(tiny_model_dir("bert"))
    path = _corpus(tmp_path)
    runs, ids = {}, set()
    for dtype in ("float32", "bfloat16"):
        opts = FeaturizeOptions(model=model, laser=False, compute_dtype=dtype, dtype="float32")
        ids.add(featurize_corpus(path, tmp_path / dtype, opts, progress=False).encoder_id)
        runs[dtype] = Store(tmp_path / dtype).features("c", "mean", layers=None)
    assert len(ids) == 1  # compute precision is not part of the fingerprint
    full, half = runs["float32"], runs["bfloat16"]
    assert np.abs(full).max() > 0.1
    assert not np.array_equal(full, half)  # autocast really ran in bfloat16
    np.testing.assert_allclose(half, full, atol=0.05 * np.abs(full).max())


def test_summary_prints_mb_per_second_beside_texts_per_second(tiny_model_dir, tmp_path, capsys):
    path = _corpus(tmp_path)
    assert main(["featurize", str(path), "--store", str(tmp_path / "s"), "--model",
                 str(tiny_model_dir("bert")), "--no-laser", "--no-progress"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("written"))
    assert "texts/s" in line and "MB/s" in line
    assert line.index("texts/s") < line.index("MB/s")


def test_summary_separates_loading_the_model_from_the_pass(tiny_model_dir, tmp_path, capsys):
    """`load_seconds` is the part of the pass spent loading the model, so a caller can time
    encoding alone; a run with nothing new loads no model and reports none."""
    path, model = _corpus(tmp_path), str(tiny_model_dir("bert"))
    argv = ["featurize", str(path), "--store", str(tmp_path / "s"), "--model", model,
            "--no-laser", "--no-progress", "--json"]
    capsys.readouterr()
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert 0 < first["load_seconds"] < first["pass_seconds"]
    assert first["encode_seconds"] <= first["pass_seconds"] - first["load_seconds"]
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["new"] == 0 and again["load_seconds"] == 0
