"""fit-head, predict, compare and probe-layers through the CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from test_heads_support import toy_store

from featstore.cli import main
from featstore.store import StoreWriter, keys_for, open_store

FAST = ["--epochs", "15", "--hidden", "32", "--no-progress"]


def run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def fail(args: list[str], capsys: pytest.CaptureFixture) -> str:
    code, out, err = run(args, capsys)
    assert code == 2, (out, err)
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("fit-head")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def add_dataset(root: Path, name: str, texts: list[str], encoders: list[str], **cols) -> None:
    with StoreWriter(root) as w:
        w.commit_dataset(name, pa.table({"_key": keys_for(texts), "text": texts, **cols}),
                         text_column="text", source="test", encoders=encoders, skipped=0)


def test_fit_head_prints_metrics_and_saves_the_head(tmp_path, capsys):
    toy_store(tmp_path / "s")
    code, out, _ = run(["fit-head", "--store", str(tmp_path / "s"), "--out", "h",
                        "--no-progress"], capsys)
    assert code == 0
    assert "train split -> test split" in out and "accuracy  100.00" in out
    doc = json.loads((tmp_path / "s" / "heads" / "h" / "head.json").read_text())
    assert doc["labels"] == ["c0", "c1", "c2"] and doc["metrics"]["accuracy"] == 1.0
    assert doc["encoder"]["fingerprint"]["model"] == "toy-model"
    assert doc["config"]["pool"] == "mean" and doc["config"]["head"] == "logreg"
    code, out, _ = run(["fit-head", "--store", str(tmp_path / "s"), "--pool", "mean-max",
                        "--head", "mlp", "--json", *FAST], capsys)
    res = json.loads(out)
    assert res["head"] == "toy-mean-max-mlp" and res["metrics"]["accuracy"] >= 0.85
    assert res["fit"]["epochs_run"] <= 15


def test_fit_head_cv_and_few_shot(tmp_path, capsys):
    toy_store(tmp_path / "s", split=False)
    code, out, _ = run(["fit-head", "--store", str(tmp_path / "s"), "--cv", "3", "--json",
                        "--C", "1", "--no-progress"], capsys)
    res = json.loads(out)
    assert res["protocol"] == "3-fold stratified CV" and res["runs"] == 3
    code, out, _ = run(["fit-head", "--store", str(tmp_path / "s"), "--shots", "5",
                        "--repeats", "3", "--out", "few", "--no-progress"], capsys)
    assert code == 0 and "5 shots x 3" in out and "±" in out


def test_predict_writes_labels_and_probabilities(tmp_path, capsys):
    _, _, texts = toy_store(tmp_path / "s")
    run(["fit-head", "--store", str(tmp_path / "s"), "--out", "h", "--no-progress"], capsys)
    corpus = tmp_path / "in.csv"
    pd.DataFrame({"text": texts[:6]}).to_csv(corpus, index=False)
    code, out, _ = run(["predict", "--store", str(tmp_path / "s"), "--head", "h",
                        str(corpus)], capsys)
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0] == "text,prediction,p_c0,p_c1,p_c2" and len(lines) == 7
    assert [ln.split(",")[1] for ln in lines[1:]] == ["c0", "c1", "c2", "c0", "c1", "c2"]
    target = tmp_path / "p.jsonl"
    code, _, _ = run(["predict", "--store", str(tmp_path / "s"), "--head", "h", "toy",
                      "--out", str(target)], capsys)
    rows = [json.loads(x) for x in target.read_text().splitlines()]
    assert len(rows) == 240 and abs(sum(rows[0][f"p_c{i}"] for i in range(3)) - 1) < 1e-5


def test_predict_refuses_a_head_from_another_encoder(tmp_path, capsys):
    toy_store(tmp_path / "a")
    run(["fit-head", "--store", str(tmp_path / "a"), "--out", "h", "--no-progress"], capsys)
    toy_store(tmp_path / "b")
    with StoreWriter(tmp_path / "b"):
        pass
    import shutil

    shutil.copytree(tmp_path / "a" / "heads", tmp_path / "b" / "heads")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    manifest["encoders"]["enc-toy"]["fingerprint"]["max_length"] = 7
    manifest.pop("checksum")  # hand-edited: a manifest without a checksum is still read
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(manifest))
    msg = fail(["predict", "--store", str(tmp_path / "b"), "--head", "h", "toy"], capsys)
    assert "fingerprint this store does not hold" in msg


def test_compare_leaderboard_and_chart(tmp_path, capsys):
    toy_store(tmp_path / "s", tokens=True)
    chart = tmp_path / "c.png"
    code, out, _ = run(["compare", "--store", str(tmp_path / "s"), "--pools", "mean", "cls",
                        "lstm", "--heads", "logreg", "linear", "--epochs", "10", "--plot",
                        str(chart), "--no-progress", "--save-best", "best"], capsys)
    assert code == 0
    assert "configuration" in out and "train s" in out
    assert "mean + logreg" in out and "lstm + linear" in out and "lstm + logreg" not in out
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((tmp_path / "s" / "heads" / "best").glob("head-*.safetensors"))) == 1
    code, out, _ = run(["compare", "--store", str(tmp_path / "s"), "--pools", "mean", "pooler",
                        "--heads", "logreg", "--json", "--plot", str(chart), "--overwrite",
                        "--no-progress"], capsys)
    board = json.loads(out)["leaderboard"]
    assert [e["accuracy"] for e in board] == sorted((e["accuracy"] for e in board), reverse=True)


def test_probe_layers_finds_the_informative_layer(tmp_path, capsys):
    toy_store(tmp_path / "s", signal_layer=2)
    chart = tmp_path / "p.png"
    code, out, _ = run(["probe-layers", "--store", str(tmp_path / "s"), "--json", "--plot",
                        str(chart), "--no-progress"], capsys)
    rows = json.loads(out)["layers"]
    assert len(rows) == 8
    best = max(rows, key=lambda r: r["accuracy"])
    assert best["layer"] == 2 and best["accuracy"] > 0.9
    assert max(r["accuracy"] for r in rows if r["layer"] != 2) < 0.6
    assert chart.is_file()
    code, out, _ = run(["probe-layers", "--store", str(tmp_path / "s"), "--plot", str(chart),
                        "--overwrite", "--no-progress"], capsys)
    assert "layer  cls acc  mean acc" in out


def test_fit_head_regression(tmp_path, capsys):
    _, _, texts = toy_store(tmp_path / "s")
    store = open_store(tmp_path / "s")
    mean = store.features(texts, "mean", -1).astype(float)
    score = (mean[:, :3].sum(1)).round(4).tolist()
    add_dataset(tmp_path / "s", "reg", texts, ["enc-toy"], score=score,
                split=["test" if i % 4 == 0 else "train" for i in range(240)])
    code, out, err = run(["fit-head", "--store", str(tmp_path / "s"), "--train", "reg",
                          "--task", "regression", "--label-col", "score", "--head", "linear",
                          "--dropout", "0", "--lr", "0.01", "--epochs", "80", "--json",
                          "--no-progress"], capsys)
    assert code == 0, err
    m = json.loads(out)["metrics"]
    assert m["pearson"] > 0.9 and m["spearman"] > 0.85 and m["rmse"] < float(np.std(score))
    assert "logreg is a classifier" in fail(
        ["fit-head", "--store", str(tmp_path / "s"), "--train", "reg", "--task", "regression",
         "--label-col", "score", "--head", "logreg"], capsys)


def test_bad_inputs_fail_with_one_line(tmp_path, capsys):
    root = tmp_path / "s"
    _, _, texts = toy_store(root)
    s = str(root)
    y = [f"c{i % 3}" for i in range(240)]
    add_dataset(root, "nolabel", texts, ["enc-toy"], other=y)
    assert "no 'label' or 'category' column (columns: text, other)" in fail(
        ["fit-head", "--store", s, "--train", "nolabel"], capsys)
    add_dataset(root, "oneclass", texts, ["enc-toy"], label=["a"] * 240)
    assert "only one class" in fail(["fit-head", "--store", s, "--train", "oneclass"], capsys)
    add_dataset(root, "evalonly", texts[:30], ["enc-toy"], label=["zz"] * 15 + y[:15])
    assert "appear only in evaluation" in fail(
        ["fit-head", "--store", s, "--train", "toy", "--eval", "evalonly"], capsys)
    add_dataset(root, "nan", texts, ["enc-toy"], label=[None, *y[1:]])
    assert "have no value in label column" in fail(
        ["fit-head", "--store", s, "--train", "nan"], capsys)
    add_dataset(root, "fresh", ["never featurized", "nor this"], [], label=["a", "b"])
    msg = fail(["fit-head", "--store", s, "--train", "fresh", "--cv", "2"], capsys)
    assert "not featurized with encoder enc-toy" in msg and "featurize" in msg
    assert "featurize --tokens" in fail(
        ["fit-head", "--store", s, "--pool", "attention"], capsys)
    msg = fail(["fit-head", "--store", s, "--fuse", "laser"], capsys)
    assert "no LASER vectors" in msg and "laserembeddings download-models" in msg
    assert "invalid head name 'x/y'" in fail(["fit-head", "--store", s, "--out", "x/y"], capsys)
    assert "unknown pooling 'avg'" in fail(["fit-head", "--store", s, "--pool", "avg"], capsys)
    assert "layer 9 is not stored" in fail(["fit-head", "--store", s, "--layers", "9"], capsys)
    assert "neither a dataset" in fail(["fit-head", "--store", s, "--train", "nope"], capsys)
    assert "no head 'ghost'" in fail(["predict", "--store", s, "--head", "ghost", "toy"], capsys)


def test_real_tiny_encoder_end_to_end(tiny_model_dir, tmp_path, capsys):
    """featurize a corpus with a tiny random BERT, fit a head, then predict on new texts: the
    new texts are encoded on the fly and stored."""
    model = str(tiny_model_dir("bert"))
    words = ["card", "money", "bank", "transfer", "refund", "balance"]
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for i in range(60):
        lab = i % 2
        w = words[:3] if lab == 0 else words[3:]
        texts.append(f"my {' '.join(rng.choice(w, 3))} {i}")
        labels.append(["cards", "payments"][lab])
    corpus = tmp_path / "c.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(corpus, index=False)
    s = str(tmp_path / "s")
    # a --train file the store lacks is featurized first, with the encoder --model names
    code, out, err = run(["fit-head", "--store", s, "--model", model, "--train", str(corpus),
                          "--cv", "3", "--out", "tiny", "--json", "--no-progress"], capsys)
    assert code == 0, err
    assert "featurizing" in err and json.loads(out)["metrics"]["accuracy"] >= 0.5
    assert json.loads(out)["train"] == "c"
    new = tmp_path / "new.csv"
    pd.DataFrame({"text": ["my card bank money now", "a refund transfer please"]}).to_csv(
        new, index=False)
    code, out, err = run(["predict", "--store", s, "--head", "tiny", str(new), "--no-progress"],
                         capsys)
    assert code == 0 and "encoding 2 text(s)" in err
    assert len(out.strip().splitlines()) == 3
    store = open_store(s)
    assert store.has(store.resolve_encoder(), keys_for(["a refund transfer please"]),
                     ["mean"]).all()
