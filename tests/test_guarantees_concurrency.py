"""Concurrency: one writer at a time (the second fails clearly, or waits with --wait); readers
during a write see a consistent snapshot made of committed shards only."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_guarantees_support import (
    TEXTS,
    featurize_args,
    manifest,
    one_line_error,
    run_cli,
    write_corpus,
)

import featstore
from featstore.store import StoreError, StoreWriter
from featstore.store import lock as lock_mod

HOLDER = """
import sys, time
from pathlib import Path
from featstore.store import StoreWriter
with StoreWriter(sys.argv[1]):
    print("holding", flush=True)
    while not Path(sys.argv[2]).exists():
        time.sleep(0.05)
"""


def _hold_lock(store: Path, release: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(store), str(release)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding"
    return proc


def test_second_writer_in_another_process_is_refused_with_its_pid(capsys, tiny_model_dir,
                                                                  tmp_path):
    store, release = tmp_path / "s", tmp_path / "release"
    holder = _hold_lock(store, release)
    try:
        corpus = write_corpus(tmp_path / "c.csv", TEXTS[:10])
        before = (store / "manifest.json").read_bytes()
        code, _, err = run_cli(capsys, *featurize_args(corpus, store, tiny_model_dir("bert")))
        line = one_line_error(err)
        assert code == 2 and f"(pid {holder.pid})" in line and "--wait" in line
        code, _, err = run_cli(capsys, "repair", "--store", store)
        assert code == 2 and "being written by another process" in one_line_error(err)
        assert (store / "manifest.json").read_bytes() == before
    finally:
        release.touch()
        holder.wait()


def test_a_killed_holder_releases_the_lock(capsys, tiny_model_dir, tmp_path):
    store = tmp_path / "s"
    holder = _hold_lock(store, tmp_path / "never")
    holder.kill()
    holder.wait()
    corpus = write_corpus(tmp_path / "c.csv", TEXTS[:10])
    code, _, err = run_cli(capsys, *featurize_args(corpus, store, tiny_model_dir("bert")))
    assert code == 0, err


def test_wait_runs_after_the_first_writer_releases(capsys, tiny_model_dir, tmp_path,
                                                   monkeypatch):
    """With --wait the second featurize blocks on the lock, writes nothing meanwhile, and
    finishes after the first writer lets go (an ordering check, not a timing one)."""
    store = tmp_path / "s"
    corpus = write_corpus(tmp_path / "c.csv", TEXTS[:30])
    model = tiny_model_dir("bert")
    arrived = threading.Event()
    real_acquire = lock_mod.WriterLock.acquire

    def acquire(self):
        if self.wait:
            arrived.set()
        return real_acquire(self)

    monkeypatch.setattr(lock_mod.WriterLock, "acquire", acquire)
    events: list[str] = []
    result: dict = {}

    def second():
        from featstore.cli import main

        result["code"] = main(featurize_args(corpus, store, model, "--wait"))
        events.append("second finished")

    with StoreWriter(store):
        generation = manifest(store)["generation"]
        t = threading.Thread(target=second)
        t.start()
        assert arrived.wait(120)
        for _ in range(5):  # it keeps waiting while the lock is held
            time.sleep(0.2)
            assert t.is_alive()
        assert manifest(store)["generation"] == generation
        events.append("first released")
    t.join(120)
    assert result["code"] == 0 and events == ["first released", "second finished"]
    assert featstore.open(store).datasets()[0]["rows"] == 30


def test_wait_has_a_timeout_in_the_api(tmp_path):
    with (StoreWriter(tmp_path / "s"),
          pytest.raises(StoreError, match="being written by another process"),
          StoreWriter(tmp_path / "s", wait=True, wait_timeout=0.3)):
        pass


def test_readers_during_a_write_see_only_committed_shards(tiny_model_dir, tmp_path):
    """A writer process commits shard after shard; a reader loop opens snapshots meanwhile.
    Every snapshot must resolve every key it lists, and its values must equal the final ones
    (committed shards never change), and its dataset table must be complete or absent."""
    store = tmp_path / "s"
    texts = [f"{t} and then {i} more words about a transfer" for i, t in
             enumerate(TEXTS * 5)]
    corpus = write_corpus(tmp_path / "c.csv", texts)
    cmd = [sys.executable, "-m", "featstore", *featurize_args(corpus, store,
                                                              tiny_model_dir("bert"),
                                                              "--shard-rows", "10")]
    writer = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    snapshots: list[tuple[int, list[str], np.ndarray, np.ndarray]] = []
    tables = 0
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        done = writer.poll() is not None
        try:
            s = featstore.open(store)
        except StoreError:  # no manifest yet
            time.sleep(0.01)
            continue
        encs = [e["id"] for e in s.sources()]
        if encs:
            enc = encs[0]
            keys = list(s.index(enc, "cls"))
            assert len(keys) == s.encoder_entry(enc).rows  # the index is exactly the commits
            if keys:
                snapshots.append((s.manifest.generation, keys, s.gather(enc, keys, "cls"),
                                  s.gather(enc, keys, "mean", -1)))
            if s.manifest.datasets:
                table = s.dataset("c")
                assert len(table) == len(texts)
                assert s.has(enc, table["_key"].tolist(), ["cls", "mean", "max"]).all()
                tables += 1
        if done:
            break
    assert writer.wait() == 0, writer.stderr.read().decode()
    final = featstore.open(store)
    enc = final.sources()[0]["id"]
    assert len({g for g, *_ in snapshots}) >= 3, "the reader never overlapped the writer"
    for _, keys, cls, mean in snapshots:
        np.testing.assert_array_equal(cls, final.gather(enc, keys, "cls"))
        np.testing.assert_array_equal(mean, final.gather(enc, keys, "mean", -1))
    assert tables >= 1 and final.verify() == []


def test_old_snapshot_reads_its_table_while_a_writer_replaces_it(capsys, tiny_model_dir,
                                                                 tmp_path):
    """Re-featurizing a dataset under the same name replaces its table; a reader that opened
    the store before still reads the table of its own snapshot."""
    store = tmp_path / "s"
    model = tiny_model_dir("bert")
    first = write_corpus(tmp_path / "c.csv", TEXTS[:20])
    assert run_cli(capsys, *featurize_args(first, store, model))[0] == 0
    reader = featstore.open(store)
    write_corpus(first, TEXTS[20:50])
    assert run_cli(capsys, *featurize_args(first, store, model))[0] == 0
    old = reader.dataset("c")
    assert len(old) == 20
    assert len(featstore.open(store).dataset("c")) == 30


def test_fit_head_during_a_write_reads_the_committed_snapshot(capsys, tiny_model_dir,
                                                              tmp_path):
    """fit-head needs no writer lock: while a writer holds the store and has published (not
    committed) a shard, fit-head trains on exactly what is committed, with the same result as
    with no writer around."""
    import json as json_mod

    store = tmp_path / "s"
    model = tiny_model_dir("bert")
    corpus = write_corpus(tmp_path / "c.csv", TEXTS[:60], [i % 2 for i in range(60)])
    assert run_cli(capsys, *featurize_args(corpus, store, model))[0] == 0
    fit = ["fit-head", "--store", store, "--train", "c", "--cv", "2", "--json", "--no-progress"]
    code, alone, err = run_cli(capsys, *fit, "--out", "alone")
    assert code == 0, err
    with StoreWriter(store) as w:
        enc = next(iter(w.manifest.encoders))
        w.write_shard_file(enc, [f"{i:032x}" for i in range(3)],
                           {"cls": np.zeros((3, 3, 32), np.float16)})
        code, during, err = run_cli(capsys, *fit, "--out", "during")
    assert code == 0, err
    a, b = json_mod.loads(alone), json_mod.loads(during)
    assert a["train_rows"] == b["train_rows"] == 60
    assert a["metrics"] == b["metrics"]
