"""The Ray engine against a real local Ray cluster: same store as the local engine, incremental,
crash-safe (a job killed after its first commit is finished by a re-run computing only the rest).
"""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import WORDS
from consistency import assert_same_text_same_vector
from laser_tiny import build_tiny_laser

from featstore.cli import main
from featstore.featurize.driver import featurize_corpus
from featstore.featurize.options import FeaturizeOptions
from featstore.store import KEY_COLUMN, Store, StoreWriter

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SHARD_ROWS = 16


@pytest.fixture(scope="module")
def cluster():
    """A real two-CPU local cluster for the whole module (starting one takes seconds)."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=False,
             runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false",
                                       "TRANSFORMERS_VERBOSITY": "error"}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple:
    """60 rows: 50 distinct short texts, 9 repeats, and one text long enough for 4+ windows."""
    rng = np.random.default_rng(7)
    short = [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 14)))) + f" {i}"
             for i in range(50)]
    long_text = " ".join(rng.choice(WORDS, size=220))
    texts = [*short, long_text, *[short[i] for i in (0, 3, 3, 9, 17, 25, 33, 41, 49)]]
    labels = [f"l{i % 5}" for i in range(len(texts))]
    path = tmp_path_factory.mktemp("corpus") / "toy.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    return path, len(set(texts))


def _options(model, laser_dir=None, compute_dtype="float32", **kw) -> FeaturizeOptions:
    # Ray workers are other processes: `auto` would follow their CPU, not the tests' float32
    return FeaturizeOptions(model=str(model), laser=laser_dir is not None,
                            laser_dir=str(laser_dir) if laser_dir else None,
                            shard_rows=SHARD_ROWS, compute_dtype=compute_dtype, **kw)


def _shard_files(root) -> set[str]:
    return {p.relative_to(root).as_posix() for p in (root / "encoders").rglob("*.h5")}


def test_ray_store_matches_local_and_survives_a_killed_job(cluster, corpus, tiny_model_dir,
                                                           tmp_path, monkeypatch, capsys):
    path, unique = corpus
    model = tiny_model_dir("bert")
    laser = build_tiny_laser(tmp_path / "laser")
    local = featurize_corpus(path, tmp_path / "local", _options(model, laser),
                             progress=False).to_dict()
    assert local["new"] == local["laser_new"] == unique
    assert local["windows"] > unique  # the long text has windows

    # A job killed after its first commit: that shard is kept, the rest become orphans.
    real_commit = StoreWriter.commit_shard
    commits = []

    def commit_then_die(self, encoder_id, shard):
        if commits:
            raise RuntimeError("killed")
        commits.append(shard)
        real_commit(self, encoder_id, shard)

    monkeypatch.setattr(StoreWriter, "commit_shard", commit_then_die)
    root = tmp_path / "ray"
    with pytest.raises(RuntimeError, match="killed"):  # one worker: half the start-up cost
        featurize_corpus(path, root, _options(model, laser, engine="ray", workers=1),
                         progress=False)
    monkeypatch.setattr(StoreWriter, "commit_shard", real_commit)
    killed = Store(root)
    enc_id = local["encoder_id"]
    assert set(killed.manifest.encoders) == {enc_id, local["laser_encoder_id"]}
    assert killed.encoder_entry(enc_id).rows == commits[0].rows > 0
    killed_laser = killed.encoder_entry(local["laser_encoder_id"]).rows
    assert not killed.manifest.datasets

    capsys.readouterr()
    # More workers than the cluster holds: start with what fits, never wait forever.
    summary = featurize_corpus(path, root, _options(model, laser, engine="ray", workers=3),
                               progress=False).to_dict()
    assert "room for 2 of 3 workers" in capsys.readouterr().err
    assert summary["engine"] == "ray" and summary["workers"] == 3
    assert summary["new"] == unique - commits[0].rows  # only what was not committed
    assert summary["cached"] == commits[0].rows
    assert summary["encoder_id"] == enc_id
    assert summary["laser_encoder_id"] == local["laser_encoder_id"]
    assert summary["laser_new"] == unique - killed_laser
    assert summary["windows"] + killed_windows(killed, enc_id) == local["windows"]
    assert summary["bytes_written"] > 0 and summary["mb_per_s"] >= 0

    a, b = Store(tmp_path / "local"), Store(root)
    # No orphans left: every shard file on disk is named by the manifest.
    assert _shard_files(root) == {s.file for e in b.manifest.encoders.values()
                                  for s in e.shards}
    assert not any((root / "tmp").iterdir())
    keys = a.dataset("toy")[KEY_COLUMN].tolist()
    pd.testing.assert_frame_equal(a.dataset("toy"), b.dataset("toy"))
    assert set(a.index(enc_id, "cls")) == set(b.index(enc_id, "cls"))
    assert sorted(b.encoder_entry(enc_id).feature_shapes) == ["cls", "max", "mean", "pooler"]
    for feature in ("cls", "mean", "max", "pooler"):
        x = a.gather(enc_id, keys, feature).astype(np.float32)
        y = b.gather(enc_id, keys, feature).astype(np.float32)
        assert np.abs(x).max() > 0.1  # real values, not zeros
        np.testing.assert_allclose(y, x, rtol=1e-2, atol=2e-3)  # float16 storage tolerance
        assert_same_text_same_vector(y, x, "float32", f"Ray vs local {feature}")
    assert b.rows_by_attr(enc_id, "compute_dtype") == {"float32": unique}
    assert b.rows_by_attr(local["laser_encoder_id"], "compute_dtype") == {"float32": unique}
    np.testing.assert_allclose(b.features("toy", "laser"), a.features("toy", "laser"),
                               rtol=1e-2, atol=2e-3)
    assert a.datasets()[0]["encoders"] == b.datasets()[0]["encoders"]
    np.testing.assert_array_equal(a.gather_meta(enc_id, keys, "n_windows"),
                                  b.gather_meta(enc_id, keys, "n_windows"))
    assert a.gather_meta(enc_id, keys, "n_windows").max() >= 4

    # A second run through the CLI computes nothing, starts no worker, and the store verifies.
    capsys.readouterr()
    assert main(["featurize", str(path), "--store", str(root), "--model", str(model),
                 "--laser-dir", str(laser), "--engine", "ray", "--workers", "2",
                 "--no-progress", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["new"] == again["laser_new"] == 0 and again["cached"] == unique
    assert again["workers"] == 0
    assert main(["verify", "--store", str(root)]) == 0
    assert b.encoder_entry(enc_id).rows == Store(root).encoder_entry(enc_id).rows == unique


def test_ray_equals_local_within_the_bfloat16_contract(cluster, corpus, tiny_model_dir,
                                                       tmp_path):
    """bfloat16 forced on any CPU: Ray's batches differ from the local engine's, so the vectors
    agree within the contract, and every shard says how it was computed."""
    path, unique = corpus
    model = tiny_model_dir("bert")
    local = featurize_corpus(path, tmp_path / "local", _options(model, compute_dtype="bfloat16"),
                             progress=False).to_dict()
    ray_run = featurize_corpus(path, tmp_path / "ray", _options(model, compute_dtype="bfloat16",
                                                                engine="ray", workers=1),
                               progress=False).to_dict()
    assert local["compute_dtypes"] == ray_run["compute_dtypes"] == {"bfloat16": unique}
    a, b = Store(tmp_path / "local"), Store(tmp_path / "ray")
    enc_id = local["encoder_id"]
    assert b.rows_by_attr(enc_id, "compute_dtype") == {"bfloat16": unique}
    keys = a.dataset("toy")[KEY_COLUMN].tolist()
    for feature in ("cls", "mean", "max"):
        assert_same_text_same_vector(b.gather(enc_id, keys, feature),
                                     a.gather(enc_id, keys, feature), "bfloat16",
                                     f"Ray vs local {feature}")


def killed_windows(store: Store, enc_id: str) -> int:
    """Windows of the texts the killed job committed (read back from the shard's meta)."""
    keys = list(store.index(enc_id, "cls"))
    return int(store.gather_meta(enc_id, keys, "n_windows").sum())


def test_ray_flags_need_the_ray_engine(tmp_path, capsys):
    assert main(["featurize", str(tmp_path / "x.csv"), "--workers", "2"]) == 2
    assert "--engine ray" in capsys.readouterr().err


def test_missing_ray_is_one_clear_line(corpus, tmp_path, monkeypatch, capsys):
    path, _ = corpus
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["featurize", str(path), "--store", str(tmp_path / "s"), "--engine", "ray",
                 "--no-laser"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --engine ray needs Ray Data") and "pip install" in err
    assert "\n" not in err
    assert not (tmp_path / "s").exists()  # nothing half-written


def test_cuda_without_gpus_per_worker_fails_before_starting(corpus, tmp_path, capsys):
    path, _ = corpus
    assert main(["featurize", str(path), "--store", str(tmp_path / "s"), "--engine", "ray",
                 "--device", "cuda", "--no-laser"]) == 2
    assert "--gpus-per-worker" in capsys.readouterr().err
