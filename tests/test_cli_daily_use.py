"""What a user meets day to day: no head or chart replaced silently, heads listed and removed,
predict on inline texts and stdin with --json and --top-k and the gold columns kept, a per-class
report, a training dataset never guessed from recency, LASER quiet unless asked for."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from test_cli_heads import add_dataset, fail, run
from test_heads_support import toy_store

from featstore.cli import main
from featstore.heads import HeadClassifier
from featstore.heads.errors import HeadError
from featstore.store import open_store


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith(".lock")}


def test_a_head_is_never_replaced_silently(tmp_path, capsys):
    toy_store(tmp_path / "s")
    s = str(tmp_path / "s")
    assert run(["fit-head", "--store", s, "--C", "1", "--no-progress"], capsys)[0] == 0
    before = tree(tmp_path / "s" / "heads")
    line = fail(["fit-head", "--store", s, "--pool", "max", "--out", "toy-mean-logreg",
                 "--no-progress"], capsys)
    assert "already exists" in line and "--overwrite" in line
    assert tree(tmp_path / "s" / "heads") == before
    code, out, _ = run(["fit-head", "--store", s, "--pool", "max", "--out", "toy-mean-logreg",
                        "--overwrite", "--json", "--no-progress"], capsys)
    assert code == 0 and json.loads(out)["pool"] == "max"
    doc = json.loads((tmp_path / "s" / "heads" / "toy-mean-logreg" / "head.json").read_text())
    assert doc["config"]["pool"] == "max"
    store = open_store(s)
    clf = HeadClassifier(C=1.0).fit(store, "toy")
    with pytest.raises(HeadError, match="overwrite=True"):
        clf.save(store, "toy-mean-logreg")


def test_heads_list_and_rm(tmp_path, capsys):
    toy_store(tmp_path / "s")
    s = str(tmp_path / "s")
    run(["fit-head", "--store", s, "--C", "1", "--out", "a", "--no-progress"], capsys)
    run(["fit-head", "--store", s, "--pool", "cls", "--C", "1", "--out", "b", "--no-progress"],
        capsys)
    code, out, _ = run(["heads", "list", "--store", s, "--json"], capsys)
    rows = json.loads(out)
    assert [(r["name"], r["pool"], r["head"], r["dataset"]) for r in rows] == [
        ("a", "mean", "logreg", "toy"), ("b", "cls", "logreg", "toy")]
    assert rows[0]["score"] == 1.0 and rows[0]["metric"] == "accuracy"
    code, out, _ = run(["heads", "list", "--store", s], capsys)
    assert out.splitlines()[2].split()[:4] == ["a", "classification", "mean", "logreg"]
    code, out, _ = run(["heads", "rm", "a", "--store", s], capsys)
    assert code == 0 and out.strip() == "removed head a"
    assert sorted(p.name for p in (tmp_path / "s" / "heads").iterdir()
                  if not p.name.startswith(".")) == ["b"]
    assert "no head 'a'" in fail(["heads", "rm", "a", "--store", s], capsys)
    assert "no head 'a'" in fail(["predict", "--store", s, "--head", "a", "toy"], capsys)


def test_predict_inline_stdin_json_top_k_and_gold_columns(tmp_path, capsys, monkeypatch):
    _, y, texts = toy_store(tmp_path / "s")
    s = str(tmp_path / "s")
    run(["fit-head", "--store", s, "--C", "1", "--out", "h", "--no-progress"], capsys)
    code, out, _ = run(["predict", "--store", s, "--head", "h", "--text", texts[1], "--text",
                        texts[2], "--top-k", "2", "--json", "--no-progress"], capsys)
    doc = json.loads(out)
    assert code == 0 and doc["rows"] == 2
    first = doc["predictions"][0]
    assert first["text"] == texts[1] and first["prediction"] == "c1" == first["label_1"]
    assert first["p_1"] >= first["p_2"] and "p_c0" not in first
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{texts[0]}\n{texts[5]}\n"))
    code, out, _ = run(["predict", "--store", s, "--head", "h", "-", "--no-progress"], capsys)
    frame = pd.read_csv(io.StringIO(out))
    assert frame["prediction"].tolist() == ["c0", "c2"]
    assert list(frame.columns) == ["text", "prediction", "p_c0", "p_c1", "p_c2"]
    code, out, _ = run(["predict", "--store", s, "--head", "h", "toy", "--top-k", "1",
                        "--no-progress"], capsys)
    frame = pd.read_csv(io.StringIO(out))
    assert list(frame.columns) == ["text", "label", "split", "prediction", "label_1", "p_1"]
    test = frame[frame["split"] == "test"]
    assert (test["prediction"] == test["label"]).mean() == 1.0
    assert "nothing to predict" in fail(["predict", "--store", s, "--head", "h"], capsys)
    assert "--json" in fail(["predict", "--store", s, "--head", "h", "toy", "--json",
                             "--format", "csv"], capsys)


def test_fit_head_report(tmp_path, capsys):
    toy_store(tmp_path / "s", strength=0.9)
    s, rep = str(tmp_path / "s"), tmp_path / "rep"
    code, out, _ = run(["fit-head", "--store", s, "--C", "1", "--report", str(rep),
                        "--no-progress"], capsys)
    assert code == 0 and "misclassified" in out
    classes = pd.read_csv(rep / "classes.csv")
    errors = pd.read_csv(rep / "errors.csv")
    assert sorted(classes["label"]) == ["c0", "c1", "c2"] and classes["support"].sum() == 60
    assert list(classes["f1"]) == sorted(classes["f1"])  # worst first
    assert (errors["gold"] != errors["predicted"]).all()
    assert errors["text"].str.startswith("text number").all()
    accuracy = json.loads((tmp_path / "s" / "heads" / "toy-mean-logreg" / "head.json")
                          .read_text())["metrics"]["accuracy"]
    assert len(errors) == round(60 * (1 - accuracy))
    assert (rep / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    line = fail(["fit-head", "--store", s, "--C", "1", "--out", "h2", "--report", str(rep),
                 "--no-progress"], capsys)
    assert "--overwrite" in line and not (tmp_path / "s" / "heads" / "h2").exists()


def test_charts_go_where_asked_and_are_never_replaced_silently(tmp_path, capsys):
    toy_store(tmp_path / "s")
    s, charts = str(tmp_path / "s"), tmp_path / "charts"
    charts.mkdir()
    code, out, _ = run(["probe-layers", "--store", s, "--charts", str(charts), "--json",
                        "--no-progress"], capsys)
    doc = json.loads(out)
    assert doc["plot"] == str(charts / "probe-toy.png") and doc["chance"] == pytest.approx(1 / 3)
    before = (charts / "probe-toy.png").read_bytes()
    line = fail(["probe-layers", "--store", s, "--charts", str(charts), "--no-progress"], capsys)
    assert "already exists" in line and "--overwrite" in line
    assert (charts / "probe-toy.png").read_bytes() == before
    assert "PNG" in fail(["compare", "--store", s, "--plot", str(tmp_path / "c.jpg")], capsys)


def test_the_training_dataset_is_never_guessed_from_recency(tmp_path, capsys):
    _, _, texts = toy_store(tmp_path / "s", split=False)
    s = str(tmp_path / "s")
    add_dataset(tmp_path / "s", "later", texts[:30], ["enc-toy"],
                label=[f"c{i % 3}" for i in range(30)])
    line = fail(["fit-head", "--store", s, "--no-progress"], capsys)
    assert "2 datasets" in line and "toy" in line and "later" in line and "--train" in line
    add_dataset(tmp_path / "s", "with-split", texts[:60], ["enc-toy"],
                label=[f"c{i % 3}" for i in range(60)],
                split=["test" if i % 4 == 0 else "train" for i in range(60)])
    code, out, _ = run(["fit-head", "--store", s, "--C", "1", "--json", "--no-progress"],
                       capsys)
    assert code == 0 and json.loads(out)["train"] == "with-split"


def test_featurize_is_quiet_about_laser_unless_asked(tiny_model_dir, tmp_path, capsys):
    corpus = tmp_path / "c.csv"
    pd.DataFrame({"text": ["one text", "another text"]}).to_csv(corpus, index=False)
    model = str(tiny_model_dir("bert"))
    assert main(["featurize", "--store", str(tmp_path / "s"), "--model", model,
                 "--no-progress", str(corpus)]) == 0
    assert "LASER" not in capsys.readouterr().err
    assert main(["featurize", "--store", str(tmp_path / "s"), "--model", model, "--laser",
                 "--laser-dir", str(tmp_path / "none"), "--no-progress", str(corpus)]) == 0
    assert "LASER models not found" in capsys.readouterr().err
