"""Every head predicts every new text: `predict` and the estimators encode texts the store lacks
with every source the head reads (its encoder, a fused second encoder, LASER), and refuse, before
encoding anything, texts an imported source lacks, naming the source and the command that adds
its vectors; that command, run as written, makes the prediction work."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from laser_tiny import build_tiny_laser

from featstore.cli import main
from featstore.heads import HeadClassifier, load_head
from featstore.store import keys_for, open_store

WORDS = {"cards": ["card", "lost", "stolen", "new"], "money": ["money", "transfer", "refund",
                                                              "balance"]}
NEW = ["my new card was stolen", "please refund the money transfer"]


def corpus(path: Path, n: int = 40) -> Path:
    rows = []
    for i in range(n):
        label = "cards" if i % 2 else "money"
        w = WORDS[label]
        rows.append({"text": f"{w[i % 4]} {w[(i // 2) % 4]} the {i}", "label": label,
                     "split": "test" if i % 5 == 0 else "train"})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "heads" not in p.parts}


def stored_keys(store_path: Path, source: str) -> set[str]:
    store = open_store(store_path)
    return set(store.index(source, sorted(store.encoder_entry(source).feature_shapes)[0]))


@pytest.fixture
def two_encoders(tiny_model_dir, tmp_path, capsys):
    data = corpus(tmp_path / "intents.csv")
    store = tmp_path / "s"
    for kind in ("bert", "distilbert"):
        code, _, err = run(["featurize", "--store", str(store), "--model",
                            str(tiny_model_dir(kind)), "--no-laser", "--no-progress",
                            "--compute-dtype", "float32", str(data)], capsys)
        assert code == 0, err
    return store


def test_a_head_fused_with_a_second_encoder_predicts_new_texts(two_encoders, tiny_model_dir,
                                                                capsys):
    store = two_encoders
    bert, distil = str(tiny_model_dir("bert")), str(tiny_model_dir("distilbert"))
    code, out, err = run(["fit-head", "--store", str(store), "--model", bert, "--fuse", distil,
                          "--out", "fused", "--no-progress"], capsys)
    assert code == 0, err
    ids = {e["fingerprint"]["model"]: e["id"] for e in open_store(store).sources()}
    assert not set(keys_for(NEW)) & stored_keys(store, ids[distil])
    code, out, err = run(["predict", "--store", str(store), "--head", "fused", "--json",
                          *(a for t in NEW for a in ("--text", t))], capsys)
    assert code == 0, err
    rows = json.loads(out)["predictions"]
    assert [r["text"] for r in rows] == NEW
    assert all(abs(r["p_cards"] + r["p_money"] - 1) < 1e-6 for r in rows)
    # both encoders now hold the new texts, and a second predict encodes nothing
    for model in (bert, distil):
        assert set(keys_for(NEW)) <= stored_keys(store, ids[model])
    before = tree(store)
    code, out2, err = run(["predict", "--store", str(store), "--head", "fused", "--json",
                           *(a for t in NEW for a in ("--text", t))], capsys)
    assert code == 0 and json.loads(out2) == json.loads(out) and tree(store) == before
    # the Python estimator: the same head predicts other new texts with both encoders
    head = load_head(store, "fused")
    more = ["lost card", "balance transfer money"]
    proba = head.predict_proba(more)
    assert proba.shape == (2, 2) and np.allclose(proba.sum(axis=1), 1)
    assert set(keys_for(more)) <= stored_keys(store, ids[distil])


def test_an_estimator_fused_with_a_second_encoder_fits_and_predicts_raw_texts(
        two_encoders, tiny_model_dir):
    store = two_encoders
    bert, distil = str(tiny_model_dir("bert")), str(tiny_model_dir("distilbert"))
    firsts, seconds = ["card", "money", "lost", "refund"], ["stolen", "transfer", "new", "balance"]
    texts = [f"{firsts[i % 4]} {seconds[i % 4]} again {i}" for i in range(20)]
    labels = ["cards", "money"] * 10
    clf = HeadClassifier(store=str(store), pool="mean", encoder=bert, fuse=(distil,), C=1.0)
    clf.fit(texts, labels)
    proba = clf.predict_proba(NEW)
    assert proba.shape == (2, 2) and np.allclose(proba.sum(axis=1), 1)
    assert set(clf.predict(NEW)) <= {"cards", "money"}
    ids = {e["fingerprint"]["model"]: e["id"] for e in open_store(store).sources()}
    assert set(keys_for(texts + NEW)) <= stored_keys(store, ids[distil])


def test_a_laser_fused_head_encodes_new_texts_with_laser(tiny_model_dir, tmp_path, capsys,
                                                          monkeypatch):
    laser_dir = build_tiny_laser(tmp_path / "laser")
    data = corpus(tmp_path / "intents.csv")
    store = tmp_path / "s"
    code, _, err = run(["featurize", "--store", str(store), "--model", str(tiny_model_dir("bert")),
                        "--laser-dir", str(laser_dir), "--no-progress", str(data)], capsys)
    assert code == 0, err
    code, _, err = run(["fit-head", "--store", str(store), "--fuse", "laser", "--out", "fl",
                        "--no-progress"], capsys)
    assert code == 0, err
    laser_id = next(e["id"] for e in open_store(store).sources()
                    if e["fingerprint"]["kind"] == "laser")
    # where LASER's models are not found, nothing is encoded and the advice names the way
    before = tree(store)
    code, out, err = run(["predict", "--store", str(store), "--head", "fl", "--text", NEW[0]],
                         capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "LASER" in err and "--laser-dir" in err and tree(store) == before
    code, out, err = run(["predict", "--store", str(store), "--head", "fl", "--laser-dir",
                          str(laser_dir), "--text", NEW[0]], capsys)
    assert code == 0, err
    assert set(keys_for(NEW[:1])) <= stored_keys(store, laser_id)
    # in Python the models are found through FEATSTORE_LASER_DIR
    monkeypatch.setenv("FEATSTORE_LASER_DIR", str(laser_dir))
    assert load_head(store, "fl").predict([NEW[1]]).shape == (1,)
    assert set(keys_for(NEW)) <= stored_keys(store, laser_id)


def test_an_imported_source_is_refused_before_encoding_and_the_advice_works(
        tiny_model_dir, tmp_path, capsys):
    data = corpus(tmp_path / "intents.csv")
    store = tmp_path / "s"
    code, _, err = run(["featurize", "--store", str(store), "--model", str(tiny_model_dir("bert")),
                        "--no-laser", "--no-progress", str(data)], capsys)
    assert code == 0, err
    texts = pd.read_csv(data)["text"].tolist()
    rng = np.random.default_rng(0)
    pd.DataFrame({"text": texts, "vector": list(rng.normal(size=(len(texts), 8)).astype(
        "float32"))}).to_parquet(tmp_path / "ext.parquet")
    assert run(["import-vectors", "--store", str(store), "--name", "ext",
                str(tmp_path / "ext.parquet")], capsys)[0] == 0
    code, _, err = run(["fit-head", "--store", str(store), "--fuse", "ext", "--out", "fe",
                        "--no-progress"], capsys)
    assert code == 0, err
    before = tree(store)
    code, out, err = run(["predict", "--store", str(store), "--head", "fe",
                          *(a for t in NEW for a in ("--text", t))], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "'ext'" in err and "import-vectors" in err and "2 of the 2" in err
    assert tree(store) == before  # nothing encoded: not even the head's own encoder ran
    # the advice, followed as written with a file holding those texts' vectors
    command = err.split("`")[1]
    argv = shlex.split(command)
    assert argv[:2] == ["featstore", "import-vectors"] and argv[-1] == "FILE"
    new_file = tmp_path / "new-ext.parquet"
    pd.DataFrame({"text": NEW, "vector": list(rng.normal(size=(2, 8)).astype("float32"))}
                 ).to_parquet(new_file)
    code, out, err = run([*argv[1:-1], str(new_file)], capsys)
    assert code == 0, err
    assert "added      2" in out
    code, out, err = run(["predict", "--store", str(store), "--head", "fe", "--json",
                          *(a for t in NEW for a in ("--text", t))], capsys)
    assert code == 0, err
    assert len(json.loads(out)["predictions"]) == 2
    # adding the same file again changes nothing; a text given another vector is refused
    snapshot = tree(store)
    code, out, err = run([*argv[1:-1], str(new_file)], capsys)
    assert code == 0 and "unchanged" in out and tree(store) == snapshot
    pd.DataFrame({"text": NEW[:1], "vector": list(np.ones((1, 8), dtype="float32"))}
                 ).to_parquet(tmp_path / "other.parquet")
    code, out, err = run([*argv[1:-1], str(tmp_path / "other.parquet")], capsys)
    assert code == 2 and "another vector" in err and tree(store) == snapshot
