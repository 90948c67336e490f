"""Guarantees that an attack on a fresh store found missing, one test (or a few) per group:
links out of the store, heads without checksums, a head lost on a kill, train and eval files of
the same name, bad input touching the store, tracebacks, and meaningless values."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_guarantees_support import (
    TEXTS,
    copy_store,
    featurize_args,
    one_line_error,
    run_cli,
    tree_digest,
    write_corpus,
)

import featstore
from featstore.cli import main
from featstore.heads import HeadError, load_head


@pytest.fixture(scope="module")
def base(tiny_model_dir, tmp_path_factory) -> dict:
    """A featurized store with one saved head."""
    root = tmp_path_factory.mktemp("round-two")
    model = tiny_model_dir("bert")
    labels = [["cards", "payments", "other"][i % 3] for i in range(len(TEXTS))]
    corpus = write_corpus(root / "c.csv", TEXTS, labels)
    store = root / "store"
    assert main(featurize_args(corpus, store, model, "--shard-rows", "40")) == 0
    assert main(["fit-head", "--store", str(store), "--train", "c", "--cv", "2", "--C", "1",
                 "--out", "h", "--no-progress"]) == 0
    return {"store": store, "model": model, "corpus": corpus}


@pytest.fixture
def store(base, tmp_path) -> Path:
    return copy_store(base["store"], tmp_path / "store")


@pytest.fixture
def outside(tmp_path) -> Path:
    """A directory outside the store with a file that must never change."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "keep.txt").write_text("not yours")
    return d


def _outside_intact(outside: Path) -> bool:
    return sorted(p.name for p in outside.iterdir()) == ["keep.txt"] and \
        (outside / "keep.txt").read_text() == "not yours"


def _predict(capsys, store: Path, head: str = "h") -> tuple[int, str, str]:
    return run_cli(capsys, "predict", "--store", store, "--head", head, "c", "--no-progress")


# -- 1. data outside the store deleted ---------------------------------------------------------
@pytest.mark.parametrize("command", ["featurize", "repair"])
def test_a_tmp_link_out_of_the_store_deletes_nothing(capsys, base, store, outside, tmp_path,
                                                     command):
    (outside / "a.part").write_text("looks like ours")  # a name the sweep would take for its own
    shutil.rmtree(store / "tmp")
    (store / "tmp").symlink_to(outside)
    argv = featurize_args(write_corpus(tmp_path / "x.csv", ["new text"]), store, base["model"]) \
        if command == "featurize" else ["repair", "--store", store]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "symbolic link" in one_line_error(err)
    assert sorted(p.name for p in outside.iterdir()) == ["a.part", "keep.txt"]


def test_the_sweep_removes_only_its_own_names(capsys, base, store, tmp_path):
    (store / "tmp" / "notes.txt").write_text("a user's file")
    (store / "tmp" / "shard-0123456789abcdef.h5.part").write_text("a dead writer's shard")
    assert run_cli(capsys, *featurize_args(write_corpus(tmp_path / "x.csv", ["new"]), store,
                                           base["model"]))[0] == 0
    assert sorted(p.name for p in (store / "tmp").iterdir()) == ["notes.txt"]


# -- 2. a file outside the store overwritten ---------------------------------------------------
def test_a_lock_link_out_of_the_store_is_refused(capsys, base, store, outside, tmp_path):
    (store / ".lock").unlink()
    (store / ".lock").symlink_to(outside / "keep.txt")
    code, _, err = run_cli(capsys, *featurize_args(write_corpus(tmp_path / "x.csv", ["new"]),
                                                   store, base["model"]))
    assert code == 2 and "symbolic link" in one_line_error(err)
    assert _outside_intact(outside)


def test_a_heads_link_out_of_the_store_is_refused(capsys, store, outside):
    shutil.rmtree(store / "heads")
    (store / "heads").symlink_to(outside)
    code, _, err = run_cli(capsys, "fit-head", "--store", store, "--train", "c", "--cv", "2",
                           "--C", "1", "--out", "h2", "--no-progress")
    assert code == 2 and "symbolic link" in one_line_error(err)
    assert _outside_intact(outside)


# -- 3. silently wrong predictions ---------------------------------------------------------------
def _weights(store: Path, head: str = "h") -> Path:
    (path,) = (store / "heads" / head).glob("head-*.safetensors")
    return path


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["weights data", "weights header", "json label",
                                   "json structure"])
def test_a_flipped_bit_in_a_head_is_refused(capsys, store, where):
    if where.startswith("weights"):
        path = _weights(store)
        _flip(path, path.stat().st_size - 5 if where == "weights data" else 12)
    else:
        path = store / "heads" / "h" / "head.json"
        text = path.read_text()
        pos = text.index('"payments"') + 3 if where == "json label" else text.index("{")
        _flip(path, pos)
    code, out, err = _predict(capsys, store)
    assert code == 2 and out == "" and "head h" in one_line_error(err)
    code, _, err = run_cli(capsys, "verify", "--store", store)
    assert code == 1 and "head h" in err


def test_a_head_json_without_config_is_one_line(capsys, store):
    from featstore.heads.artifacts import _document_checksum  # noqa: PLC2701  (test only)

    path = store / "heads" / "h" / "head.json"
    doc = json.loads(path.read_text())
    del doc["config"]
    doc["checksum"] = _document_checksum(doc)
    path.write_text(json.dumps(doc))
    code, _, err = _predict(capsys, store)
    assert code == 2 and "malformed" in one_line_error(err)


# -- 4. a head lost on a kill --------------------------------------------------------------------
@pytest.mark.parametrize("step", range(1, 6))
def test_a_save_killed_at_any_step_leaves_the_old_or_the_new_head(store, step, monkeypatch):
    """Die (no cleanup runs) at the k-th file operation of a save that replaces head h."""
    from featstore.heads import artifacts

    s = featstore.open(store)
    old = load_head(s, "h")
    before = old.predict_proba(s, "c")
    new = type(old)(pool="max", C=0.5).fit(s, "c")
    after = new.predict_proba(s, "c")
    calls = {"n": 0}

    class Killed(BaseException):
        pass

    def dying(real):
        def op(*a, **k):
            calls["n"] += 1
            if calls["n"] == step:
                raise Killed
            return real(*a, **k)
        return op

    for name in ("publish", "_write_file", "_remove_unreferenced", "fsync_path"):
        monkeypatch.setattr(artifacts, name, dying(getattr(artifacts, name)))
    try:
        new.save(s, "h", overwrite=True)
        killed = False
    except Killed:
        killed = True
    monkeypatch.undo()
    got = load_head(s, "h").predict_proba(s, "c")
    assert np.array_equal(got, before) or np.array_equal(got, after)
    if not killed:
        assert np.array_equal(got, after)
    new.save(s, "h", overwrite=True)  # the next save sweeps what the killed one left
    names = sorted(p.name for p in (store / "heads" / "h").iterdir())
    assert len(names) == 2 and "head.json" in names


def test_leftovers_of_an_older_save_protocol_are_put_back(store):
    """An older featstore killed between its two renames left `.old-h-*` and `.tmp-h-*`."""
    from featstore.heads.artifacts import LEGACY_WEIGHTS

    s = featstore.open(store)
    head = load_head(s, "h")
    legacy = store / "heads" / ".old-h-0123abcd"
    (store / "heads" / "h").rename(legacy)
    (legacy / next(legacy.glob("head-*.safetensors")).name).rename(legacy / LEGACY_WEIGHTS)
    doc = json.loads((legacy / "head.json").read_text())
    doc = {k: v for k, v in doc.items() if k not in ("checksum", "weights")}
    doc["format_version"] = 1
    (legacy / "head.json").write_text(json.dumps(doc))
    with pytest.raises(HeadError, match="no head 'h'"):
        load_head(s, "h")
    head.save(s, "other")  # any head save sweeps: h comes back, as the older format
    np.testing.assert_array_equal(load_head(s, "h").predict_proba(s, "c"),
                                  head.predict_proba(s, "c"))
    assert not legacy.exists()


# -- 5. trained and scored on the wrong data -----------------------------------------------------
def test_train_and_eval_files_with_the_same_name_stay_apart(capsys, base, tmp_path):
    store = tmp_path / "store"
    labels = [["cards", "payments", "other"][i % 3] for i in range(len(TEXTS))]
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    train = write_corpus(tmp_path / "v1" / "data.csv", TEXTS[:90], labels[:90])
    ev = write_corpus(tmp_path / "v2" / "data.csv", TEXTS[90:], labels[90:])
    code, out, err = run_cli(capsys, "fit-head", "--store", store, "--model", base["model"],
                             "--train", train, "--eval", ev, "--C", "1", "--json",
                             "--no-progress")
    assert code == 0, err
    res = json.loads(out)
    assert (res["train"], res["eval"], res["train_rows"], res["eval_rows"]) == \
        ("data", "data-2", 90, 30)
    assert "as dataset 'data-2'" in err
    s = featstore.open(store)
    assert len(s.dataset("data")) == 90 and len(s.dataset("data-2")) == 30
    # featurize itself refuses to let another file take a dataset's name, unless asked
    digest = tree_digest(store)
    code, _, err = run_cli(capsys, *featurize_args(ev, store, base["model"], "--name", "data"))
    assert code == 2 and "--replace" in one_line_error(err)
    assert tree_digest(store) == digest
    assert run_cli(capsys, *featurize_args(ev, store, base["model"], "--name", "data",
                                           "--replace"))[0] == 0
    assert len(featstore.open(store).dataset("data")) == 30


# -- 6. bad input touching the store -------------------------------------------------------------
@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 3 rows, so that 'later in the file' means 'in another chunk'."""
    from featstore.featurize import corpus as corpus_mod

    real = corpus_mod.Corpus.chunks
    monkeypatch.setattr(corpus_mod.Corpus, "chunks", lambda self, rows=16384: real(self, 3))


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("late", [False, True])
def test_one_rule_for_keys_and_types_wherever_they_fall(capsys, base, store, tmp_path,
                                                        small_chunks, late):
    """The same file content gives the same result whether a change falls inside the first
    chunk or after it."""
    pad = [{"text": f"padding text {i}"} for i in range(7 if late else 0)]
    # a key that first appears part-way: accepted, null before
    corpus = _jsonl(tmp_path / "keys.jsonl", [*pad, {"text": "a", "label": 1},
                                              {"text": "b", "label": 2, "extra": "x"}])
    code, _, err = run_cli(capsys, *featurize_args(corpus, store, base["model"]))
    assert code == 0, err
    table = featstore.open(store).dataset("keys")
    first, second = table["extra"].tolist()[-2:]
    assert pd.isna(first) and second == "x"
    # integers then floats: one numeric column of floats
    corpus = _jsonl(tmp_path / "nums.jsonl", [*pad, {"text": "c", "label": 1},
                                              {"text": "d", "label": 2.5}])
    assert run_cli(capsys, *featurize_args(corpus, store, base["model"]))[0] == 0
    assert featstore.open(store).dataset("nums")["label"].tolist()[-2:] == [1.0, 2.5]
    # text then numbers: refused, naming the row, and nothing written
    corpus = _jsonl(tmp_path / "drift.jsonl", [*pad, {"text": "e", "label": "one"},
                                               {"text": "f", "label": 2}])
    digest = tree_digest(store)
    code, _, err = run_cli(capsys, *featurize_args(corpus, store, base["model"]))
    row = len(pad) + 2
    assert code == 2 and f"row {row}, column 'label'" in one_line_error(err)
    assert tree_digest(store) == digest


def test_a_late_key_error_writes_nothing(capsys, base, store, tmp_path, small_chunks):
    rows = [{"text": f"fresh text {i}"} for i in range(10)] + [{"text": {"not": "text"}}]
    digest = tree_digest(store)
    code, _, err = run_cli(capsys, *featurize_args(_jsonl(tmp_path / "late.jsonl", rows),
                                                   store, base["model"], "--shard-rows", "2"))
    assert code == 2 and "row 11, column 'text'" in one_line_error(err)
    assert tree_digest(store) == digest


def test_a_lone_surrogate_is_refused_as_the_readme_says(capsys, base, store, tmp_path):
    corpus = tmp_path / "s.jsonl"
    corpus.write_text('{"text": "fine"}\n{"text": "bad \\ud800 here"}\n')
    digest = tree_digest(store)
    code, _, err = run_cli(capsys, *featurize_args(corpus, store, base["model"]))
    assert code == 2 and "row 2, column 'text'" in one_line_error(err)
    assert "surrogate" in err and tree_digest(store) == digest


# -- 7. tracebacks instead of one line -----------------------------------------------------------
def test_a_manifest_that_is_not_utf8_is_one_line(capsys, store):
    raw = bytearray((store / "manifest.json").read_bytes())
    raw[10] = 0xFF
    (store / "manifest.json").write_bytes(bytes(raw))
    for argv in (["info"], ["verify"], ["fit-head", "--cv", "2"]):
        code, _, err = run_cli(capsys, *argv, "--store", store)
        assert code == 2 and "not valid UTF-8" in one_line_error(err)


def test_a_wrong_hidden_size_is_caught_by_verify(capsys, store):
    m = json.loads((store / "manifest.json").read_text())
    enc = next(iter(m["encoders"].values()))
    enc["feature_shapes"] = {k: [v[0], v[1] + 1] if len(v) == 2 else [v[0] + 1]
                             for k, v in enc["feature_shapes"].items()}
    enc["fingerprint"]["hidden"] += 1
    m.pop("checksum")  # a hand edit
    (store / "manifest.json").write_text(json.dumps(m))
    code, _, err = run_cli(capsys, "verify", "--store", store)
    assert code == 1 and "manifest says" in err
    code, _, err = run_cli(capsys, "fit-head", "--store", store, "--cv", "2", "--no-progress")
    assert code == 2 and "manifest says" in one_line_error(err)


def test_a_negative_learning_rate_is_one_line(capsys, store):
    code, _, err = run_cli(capsys, "fit-head", "--store", store, "--lr", "-1")
    assert code == 2 and "--lr" in one_line_error(err)
    with pytest.raises(HeadError, match="lr must be positive"):
        featstore.heads.HeadClassifier(head="mlp", lr=-1).validate_params()


def test_sigint_is_one_line(base, tmp_path):
    """Interrupt featurize at several moments (start-up, model load, encoding)."""
    texts = [f"{t} and some more words to encode {i}" for i, t in enumerate(TEXTS * 20)]
    corpus = write_corpus(tmp_path / "long.csv", texts)
    # The delay counts from the moment featstore is imported (the child says so): on a loaded
    # machine the interpreter's own start-up can take longer than the shortest delay, and an
    # interrupt before any featstore code runs is Python's to report, not featstore's.
    script = ("import sys; from featstore.cli import main; print('ready', flush=True); "
              "sys.exit(main(sys.argv[1:]))")
    for delay in (0.2, 1.5, 3.0):
        store = tmp_path / f"s{delay}"
        proc = subprocess.Popen([sys.executable, "-c", script, *featurize_args(
            corpus, store, base["model"], "--shard-rows", "50")], stderr=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err
        assert len([ln for ln in err.splitlines() if ln.strip()]) <= 1, err
        if proc.returncode != 0:
            assert proc.returncode == 130 and "interrupted" in err
            if (store / "manifest.json").exists():
                assert main(["verify", "--store", str(store)]) == 0


# -- 8. meaningless values accepted --------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["--valid-fraction", "1.0"], ["--valid-fraction", "1.5"], ["--valid-fraction", "-0.5"],
    ["--shots", "0"], ["--cv", "0"], ["--cv", "1"], ["--out", "abc\n"], ["--dropout", "1"],
    ["--epochs", "0"], ["--lr", "nan"], ["--repeats", "3"], ["--label-smoothing", "-0.1"],
])
def test_meaningless_values_are_refused_before_any_work(capsys, store, argv):
    digest = tree_digest(store)
    code, _, err = run_cli(capsys, "fit-head", "--store", store, "--no-progress", *argv)
    assert code == 2 and argv[0] in one_line_error(err)
    assert tree_digest(store) == digest


def test_names_with_a_trailing_newline_are_refused(capsys, base, store, tmp_path):
    corpus = write_corpus(tmp_path / "n.csv", ["some text"])
    code, _, err = run_cli(capsys, *featurize_args(corpus, store, base["model"], "--name",
                                                   "abc\n"))
    assert code == 2 and "invalid dataset name" in one_line_error(err)
    assert not [p for p in (store / "datasets").iterdir() if "\n" in p.name]


def test_a_no_op_featurize_works_on_a_read_only_store(capsys, base, store, monkeypatch):
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if mode == os.W_OK
                        and Path(p) == store else real_access(p, mode, **k))
    digest = tree_digest(store)
    code, out, err = run_cli(capsys, *featurize_args(base["corpus"], store, base["model"],
                                                     "--json"))
    assert code == 0, err
    assert json.loads(out)["new"] == 0 and tree_digest(store) == digest
    other = pd.DataFrame({"text": ["a text the store lacks"]})
    other.to_csv(store.parent / "o.csv", index=False)
    code, _, err = run_cli(capsys, *featurize_args(store.parent / "o.csv", store,
                                                   base["model"]))
    assert code == 2 and "read-only" in one_line_error(err)
    assert tree_digest(store) == digest


def test_an_interrupt_inside_a_finalizer_still_stops_the_command(capsys, monkeypatch, tmp_path):
    """Ctrl-C landing in a `__del__` is not printed as an ignored exception and lost: the
    command stops with its one line and exit 130, and the hook is the caller's again after."""
    import featstore.cli.store_commands as store_commands

    class Finalized:
        def __del__(self):
            raise KeyboardInterrupt

    def command(args):
        Finalized()  # collected at once: the interrupt is raised inside __del__
        for _ in range(10_000):  # where the interrupt, raised again, is delivered
            pass
        return 0

    monkeypatch.setattr(store_commands, "cmd_info", command)
    before = sys.unraisablehook
    code, _, err = run_cli(capsys, "info", "--store", tmp_path / "s")
    assert code == 130 and "Traceback" not in err and "Exception ignored" not in err
    assert err.strip().splitlines() == ["interrupted; everything committed so far is kept"]
    assert sys.unraisablehook is before
