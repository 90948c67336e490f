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

import featstore


def _featurize_cmd(corpus: Path, store: Path, model: Path) -> list[str]:
    return [sys.executable, "-m", "featstore", "featurize", "--store", str(store), "--model",
            str(model), "--no-laser", "--no-progress", "--shard-rows", "10", "--json",
            str(corpus)]


def _generation(store: Path) -> int:
    try:
        return json.loads((store / "manifest.json").read_text())["generation"]
    except (OSError, ValueError, KeyError):
        return -1


def test_sigkill_mid_run_then_rerun_matches_an_uninterrupted_run(tiny_model_dir, tmp_path):
    model = tiny_model_dir("bert")
    texts = [f"transfer {i} money to card {i * 7 % 13} please {'now ' * (i % 9)}"
             for i in range(500)]
    corpus = tmp_path / "c.csv"
    pd.DataFrame({"text": texts, "label": [i % 3 for i in range(500)]}).to_csv(corpus,
                                                                              index=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_featurize_cmd(corpus, killed, model), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    # Kill once a few shards are committed, while more are being written.
    while _generation(killed) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "featurize finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    partial = featstore.open(killed)
    committed = partial.encoders()[0]["rows"]
    assert 0 < committed < 500
    assert partial.verify() == []
    assert partial.datasets() == []  # the dataset table is committed last

    done = subprocess.run(_featurize_cmd(corpus, killed, model), env=env, capture_output=True,
                          text=True, check=True)
    summary = json.loads(done.stdout)
    assert summary["new"] == 500 - committed and summary["cached"] == committed
    clean = tmp_path / "clean"
    subprocess.run(_featurize_cmd(corpus, clean, model), env=env, capture_output=True, check=True)

    a, b = featstore.open(killed), featstore.open(clean)
    assert a.verify() == [] and not list((killed / "tmp").iterdir())
    for kind in ("cls", "mean", "max"):
        np.testing.assert_allclose(a.features("c", kind, None).astype(np.float32),
                                   b.features("c", kind, None).astype(np.float32), atol=2e-2)
    referenced = {Path(s["file"]).name for e in json.loads(
        (killed / "manifest.json").read_text())["encoders"].values() for s in e["shards"]}
    on_disk = {p.name for p in (killed / "encoders").rglob("*.h5")}
    assert on_disk == referenced  # no orphan shards survive the re-run


def test_a_second_writer_gets_a_clear_message(tiny_model_dir, tmp_path, capsys):
    from featstore.cli import main
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
