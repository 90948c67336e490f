"""Fast, early refusals: every argument and path check of a head command runs before anything is
written and before torch (or scikit-learn, scipy, matplotlib) is imported, and `heads list`
imports none of them. Asserted on the imports of a fresh process, not on a timing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_heads_support import toy_store

import featstore
from featstore.cli import main
from featstore.heads import HeadClassifier

HEAVY = ("torch", "sklearn", "scipy", "matplotlib", "transformers", "numpy", "h5py", "pandas")
MODEL_LIBRARIES = HEAVY[:5]  # what no refusal may load; listing heads loads none of HEAVY
PROBE = f"""
import json, sys
from featstore.cli import main
code = main(sys.argv[1:])
print(json.dumps({{"code": code, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def fresh(argv: list[str], cwd: Path) -> tuple[int, list[str], str, str]:
    """Run the command line in a new interpreter: (exit status, heavy modules it imported,
    stdout before the report, stderr)."""
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=120)
    *out, last = done.stdout.strip().splitlines() or [""]
    report = json.loads(last)
    return report["code"], report["heavy"], "\n".join(out), done.stderr


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()} if root.exists() else {}


@pytest.fixture
def store(tmp_path, capsys) -> Path:
    root = tmp_path / "s"
    toy_store(root, n=60)
    assert main(["fit-head", "--store", str(root), "--C", "1", "--out", "h", "--no-progress"]) == 0
    capsys.readouterr()
    return root


def refusals(root: Path, tmp: Path) -> list[tuple[list[str], str]]:
    corpus = tmp / "new.csv"
    pd.DataFrame({"text": ["a new text", "another one"], "label": ["x", "y"]}).to_csv(
        corpus, index=False)
    (tmp / "taken.png").write_bytes(b"x")
    (tmp / "taken.csv").write_text("x\n")
    (tmp / "a-file").write_text("x")
    s = ["--store", str(root)]
    return [
        (["fit-head", *s, "--train", "nope.csv"], "neither a dataset"),
        (["fit-head", *s, "--out", "h"], "already exists"),
        (["fit-head", *s, "--train", str(corpus), "--out", "h"], "already exists"),
        (["fit-head", *s, "--model", "no-such-model"], "has no encoder 'no-such-model'"),
        (["fit-head", *s, "--fuse", "nothing"], "nothing"),
        (["fit-head", *s, "--fuse", "laser"], "no LASER vectors"),
        (["fit-head", *s, "--report", str(tmp / "a-file")], "not a directory"),
        (["fit-head", *s, "--auto", "--out", "h"], "already exists"),
        (["fit-head", *s, "--auto", "--unlabeled", "missing.csv"], "neither a dataset"),
        (["fit-head", *s, "--lr", "-1"], "--lr: must be positive"),
        (["compare", *s, "--train", str(corpus), "--charts", str(tmp / "no-dir")],
         "does not exist"),
        (["compare", *s, "--plot", str(tmp / "taken.png")], "already exists"),
        (["compare", *s, "--save-best", "h"], "already exists"),
        (["probe-layers", *s, "--plot", str(tmp / "taken.png")], "already exists"),
        (["predict", *s, "--head", "nope", "--text", "hi"], "no head 'nope'"),
        (["predict", *s, "--head", "h", "--text", "hi", "--out", str(tmp / "taken.csv")],
         "already exists"),
        (["predict", *s, "--head", "h", "missing.csv"], "neither a dataset"),
        (["predict", *s, "--head", "h"], "nothing to predict"),
    ]


def test_refusals_come_before_any_write_and_any_heavy_import(store, tmp_path):
    before = tree(store)
    for argv, expected in refusals(store, tmp_path):
        code, heavy, out, err = fresh(argv, tmp_path)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
        assert expected in lines[0], (argv, lines[0])
        assert not set(heavy) & set(MODEL_LIBRARIES), (argv, heavy)
        assert tree(store) == before, argv  # nothing written: no file featurized, no chart


def test_several_datasets_without_train_is_refused_at_once(tmp_path, capsys):
    root = tmp_path / "s"
    toy_store(root, n=30, split=False)
    toy_store(root, n=30, split=False, name="other")
    code, heavy, _, err = fresh(["fit-head", "--store", str(root)], tmp_path)
    assert code == 2 and "name the training one with --train" in err
    assert not set(heavy) & set(MODEL_LIBRARIES), heavy


def test_heads_list_loads_no_model_library_nor_numpy(store, tmp_path):
    code, heavy, out, err = fresh(["heads", "list", "--store", str(store)], tmp_path)
    assert code == 0 and heavy == [], (heavy, err)
    assert out.splitlines()[2].split()[:4] == ["h", "classification", "mean", "logreg"]


def test_unseen_evaluation_labels_are_scored_as_errors_with_the_flag_the_refusal_names(
        tmp_path, capsys):
    root = tmp_path / "s"
    labels = [("c9" if i in (0, 4, 8) else f"c{i % 3}") for i in range(120)]  # rows 0, 4, 8: test
    toy_store(root, n=120, labels=labels)
    argv = ["fit-head", "--store", str(root), "--C", "1", "--json", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "'c9'" in err and "--allow-unseen-labels" in err and len(err.splitlines()) == 1
    assert main([*argv, "--allow-unseen-labels"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert any("3 evaluation example(s) carry 1 label(s) the training rows never show ('c9')"
               in n for n in out["notes"]), out["notes"]
    assert out["metrics"]["accuracy"] == pytest.approx(27 / 30)  # the rest is learnable
    store = featstore.open(root)
    table = store.dataset("toy")
    train, test = table[table.split == "train"], table[table.split == "test"]
    clf = HeadClassifier(C=1.0).fit(store, train)
    with pytest.raises(featstore.FeatstoreError, match="allow_unseen_labels"):
        clf.evaluate(store, test)
    scores = clf.evaluate(store, test, allow_unseen_labels=True)
    expected = float(np.mean(clf.predict(store, test) == test["label"].to_numpy()))
    assert scores["accuracy"] == pytest.approx(expected) and expected <= 27 / 30
    assert clf.score(store, test, allow_unseen_labels=True) == pytest.approx(expected)
