"""A featurize killed by SIGKILL mid-run loses nothing committed; a re-run finishes the job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from consistency import assert_same_text_same_vector

import featstore
from featstore.cli import main


def _featurize_args(corpus: Path, store: Path, model: Path, compute: str,
                    shard_rows: int = 10) -> list[str]:
    return ["featurize", "--store", str(store), "--model", str(model), "--no-laser",
            "--no-progress", "--shard-rows", str(shard_rows), "--json", "--compute-dtype",
            compute, str(corpus)]


def _featurize_cmd(corpus: Path, store: Path, model: Path, compute: str) -> list[str]:
    return [sys.executable, "-m", "featstore", *_featurize_args(corpus, store, model, compute)]


def _generation(store: Path) -> int:
    try:
        return json.loads((store / "manifest.json").read_text())["generation"]
    except (OSError, ValueError, KeyError):
        return -1


def test_sigkill_mid_run_then_rerun_matches_an_uninterrupted_run(tiny_model_dir, tmp_path,
                                                                 capsys):
    # One precision suffices: what a kill may not change is which rows are committed; how far
    # two runs' vectors may differ is tested in both precisions where batches differ
    # (tests/test_consistency_contract.py, repair, Ray).
    compute = "float32"
    model = tiny_model_dir("bert")
    texts = [f"transfer {i} money to card {i * 7 % 13} please {'now ' * (i % 9)}"
             for i in range(500)]
    corpus = tmp_path / "c.csv"
    pd.DataFrame({"text": texts, "label": [i % 3 for i in range(500)]}).to_csv(corpus,
                                                                              index=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_featurize_cmd(corpus, killed, model, compute), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    # Kill once a few shards are committed, while more are being written.
    while _generation(killed) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "featurize finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    partial = featstore.open(killed)
    committed = partial.sources()[0]["rows"]
    assert 0 < committed < 500
    assert partial.verify() == []
    assert partial.datasets() == []  # the dataset table is committed last

    done = subprocess.run(_featurize_cmd(corpus, killed, model, compute), env=env,
                          capture_output=True, text=True, check=True)
    summary = json.loads(done.stdout)
    assert summary["new"] == 500 - committed and summary["cached"] == committed
    assert summary["compute_dtypes"] == {compute: 500 - committed}
    clean = tmp_path / "clean"  # uninterrupted, in this process, in other batches
    assert main(_featurize_args(corpus, clean, model, compute, shard_rows=500)) == 0
    capsys.readouterr()

    a, b = featstore.open(killed), featstore.open(clean)
    assert a.verify() == [] and not list((killed / "tmp").iterdir())
    assert a.rows_by_attr(a.resolve_encoder(), "compute_dtype") == {compute: 500}
    for kind in ("cls", "mean", "max"):
        x, y = a.features("c", kind, None), b.features("c", kind, None)
        if compute == "float32":
            np.testing.assert_allclose(x.astype(np.float32), y.astype(np.float32), atol=2e-2)
        assert_same_text_same_vector(x, y, compute, f"killed and resumed vs uninterrupted {kind}")
    referenced = {Path(s["file"]).name for e in json.loads(
        (killed / "manifest.json").read_text())["encoders"].values() for s in e["shards"]}
    on_disk = {p.name for p in (killed / "encoders").rglob("*.h5")}
    assert on_disk == referenced  # no orphan shards survive the re-run


def test_a_second_writer_gets_a_clear_message(tiny_model_dir, tmp_path, capsys):
    from featstore.store import StoreWriter

    corpus = tmp_path / "c.csv"
    pd.DataFrame({"text": ["a card", "a bank"]}).to_csv(corpus, index=False)
    store = tmp_path / "s"
    with StoreWriter(store):
        code = main(["featurize", "--store", str(store), "--model", str(tiny_model_dir("bert")),
                     "--no-laser", "--no-progress", str(corpus)])
    err = capsys.readouterr().err
    assert code == 2
    assert "being written by another process" in err and "--wait" in err
    assert len(err.strip().splitlines()) == 1
