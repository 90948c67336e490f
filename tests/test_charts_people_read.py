"""Charts and reports people read: a many-class confusion picture that shows the most confused
classes readably, the top confused pairs as CSV and text, compare charts with error bars, a
chance line and a broken-axis mark where the axis cannot start at 0, every chart title naming
dataset, encoder and protocol, and errors.csv with the gold label's probability and the
margin, surest mistakes first."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sequence_support import conversation_store
from test_heads_support import toy_store

import featstore
from featstore.cli import main
from featstore.heads import load_head
from featstore.reports import charts
from featstore.reports.charts import CONFUSION_CLASSES_SHOWN, axis_start, most_confused


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.fixture
def captured(monkeypatch) -> dict[str, dict]:
    """What the commands hand each chart function (its title, error bars, chance), the PNGs
    still drawn."""
    seen: dict[str, dict] = {}
    for name in ("leaderboard_chart", "layer_chart", "confusion_chart"):
        real = getattr(charts, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            seen[_name] = {"args": args, **kwargs}
            return _real(*args, **kwargs)

        monkeypatch.setattr(charts, name, spy)
        for module in list(sys.modules.values()):  # modules that imported it by name
            if getattr(module, "__name__", "").startswith("featstore.") and \
                    getattr(module, name, None) is real:
                monkeypatch.setattr(module, name, spy)
    return seen


def test_a_many_class_report_is_readable(tmp_path, capsys, captured):
    root = tmp_path / "s"
    toy_store(root, n=1230, n_classes=41, strength=0.9)
    code = main(["fit-head", "--store", str(root), "--C", "1", "--report", str(tmp_path / "r"),
                 "--out", "h", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    report = tmp_path / "r"
    errors = pd.read_csv(report / "errors.csv")
    assert list(errors.columns) == ["text", "gold", "predicted", "p_gold", "p_predicted",
                                    "margin", "run"]
    assert np.allclose(errors.margin, errors.p_predicted - errors.p_gold, atol=2e-6)
    assert (errors.margin.diff().dropna() <= 1e-12).all()  # surest mistakes first
    head, store = load_head(root, "h"), featstore.open(root)
    proba = head.predict_proba(store, errors.text.tolist())
    classes = list(head.classes_)
    gold_p = proba[np.arange(len(errors)), [classes.index(g) for g in errors.gold]]
    assert np.allclose(gold_p, errors.p_gold, atol=1e-5)
    assert np.allclose(proba.max(axis=1), errors.p_predicted, atol=1e-5)
    pairs = pd.read_csv(report / "confused_pairs.csv")
    counted = errors.groupby(["gold", "predicted"]).size().sort_values(ascending=False)
    assert pairs["count"].sum() == len(errors) and pairs["count"].iloc[0] == counted.iloc[0]
    assert list(pairs["count"]) == sorted(pairs["count"], reverse=True)
    support = pd.read_csv(report / "classes.csv").set_index("label")["support"]
    first = pairs.iloc[0]
    assert first.share_of_gold == pytest.approx(first["count"] / support[first.gold], abs=1e-4)
    line = next(ln for ln in out.splitlines() if ln.startswith("confused  "))
    assert line.startswith(f"confused  {first.gold} -> {first.predicted} {first['count']}x")
    # the picture: the most confused classes, at a size where labels can be read
    width, height = png_size(report / "confusion.png")
    assert width < 1800 and height < 1800
    title = captured["confusion_chart"]["args"][2]
    assert title.splitlines() == ["toy · head h", "encoder toy-model (enc-toy)",
                                  "train split -> test split"]


def test_the_most_confused_classes_are_the_ones_drawn():
    n = 60
    matrix = np.diag(np.full(n, 10))
    for a, b in [(3, 50), (3, 7), (40, 41), (12, 50)]:
        matrix[a, b] += 5
    keep = most_confused(matrix)
    assert len(keep) == CONFUSION_CLASSES_SHOWN
    assert {3, 7, 12, 40, 41, 50} <= set(keep.tolist())
    assert list(keep) == sorted(keep)


def test_compare_charts_show_the_spread_and_say_what_they_show(tmp_path, capsys, captured):
    root = tmp_path / "s"
    toy_store(root, n=240)
    plot = tmp_path / "c.png"
    assert main(["compare", "--store", str(root), "--pools", "cls", "mean", "mean-max",
                 "--heads", "logreg", "--cv", "3", "--plot", str(plot), "--no-progress"]) == 0
    capsys.readouterr()
    seen = captured["leaderboard_chart"]
    assert seen["args"][3].splitlines() == ["toy · compare", "encoder toy-model (enc-toy)",
                                            "3-fold stratified CV"]
    assert len(seen["errors"]) == 3 and all(e >= 0 for e in seen["errors"])
    assert seen["spread"] == "1 standard deviation over the 3 CV folds"
    assert seen["chance"] == pytest.approx(1 / 3)
    assert png_size(plot)[0] > 0
    # a single split: the standard error of accuracy over the evaluation rows
    assert main(["compare", "--store", str(root), "--pools", "mean", "--heads", "logreg",
                 "--plot", str(tmp_path / "d.png"), "--no-progress"]) == 0
    seen = captured["leaderboard_chart"]
    q = (seen["args"][1][0] * 60 + 2) / 64
    assert seen["errors"] == [pytest.approx(np.sqrt(q * (1 - q) / 64))] and seen["errors"][0] > 0
    assert "60 evaluation examples" in seen["spread"]


def test_an_axis_starts_at_0_unless_the_bars_would_look_the_same(tmp_path):
    assert axis_start([87.2, 89.0, 90.5], 100) == 85.0
    assert axis_start([76.1, 77.4], 100) == 70.0
    assert axis_start([12.0, 95.0], 100) == 0.0
    assert axis_start([50.0, 60.0], 100) == 0.0
    assert axis_start([], 100) == 0.0
    path = charts.leaderboard_chart(["a", "b", "c"], [0.872, 0.89, 0.905], "accuracy",
                                    "d · compare\nencoder m (m-1)\nsplit", tmp_path / "x.png",
                                    errors=[0.004, 0.005, 0.003], spread="1 sd", chance=0.2)
    assert png_size(path)[0] > 0


def test_the_sequence_compare_chart_has_chance_and_encoder(tmp_path, capsys, captured):
    conversation_store(tmp_path / "s")
    assert main(["compare", "--store", str(tmp_path / "s"), "--group-by", "seq", "--order-by",
                 "turn", "--seq-heads", "mean", "last", "--cv", "3", "--plot",
                 str(tmp_path / "q.png"), "--no-progress"]) == 0
    capsys.readouterr()
    seen = captured["leaderboard_chart"]
    title = seen["args"][3].splitlines()
    assert title[0] == "messages · sequence heads by seq" and title[1].startswith("encoder ")
    assert title[2] == "3-fold stratified CV grouped by seq"
    assert seen["chance"] == pytest.approx(0.5)
    assert png_size(tmp_path / "q.png")[0] > 0


def test_the_probe_chart_names_dataset_encoder_and_protocol(tmp_path, capsys, captured):
    toy_store(tmp_path / "s", n=120)
    assert main(["probe-layers", "--store", str(tmp_path / "s"), "--charts", str(tmp_path),
                 "--no-progress"]) == 0
    capsys.readouterr()
    title = captured["layer_chart"]["args"][2].splitlines()
    assert title == ["toy · logistic regression per layer, C 1", "encoder toy-model (enc-toy)",
                     "train split -> test split"]
