"""Pairs on the command line, with a tiny random encoder: fit-head on a pair dataset reports
the head beside the cosine baseline, --auto searches pair heads by inner CV, compare ranks
each text's vectors against the joint encoding, predict takes a pair file or --text-a/--text-b
(encoding what the store lacks), --report lists both texts of each error, and flags that do
not fit a pair (or a text) dataset are refused in one line."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from pair_support import paraphrase_pairs
from test_guarantees_support import featurize_args, one_line_error, run_cli, tree_digest

import featstore
from featstore.heads import load_head


@pytest.fixture(scope="module")
def pairs(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("paircli")
    model = tiny_model_dir("bert")
    corpus = root / "para.csv"
    paraphrase_pairs(120, seed=4).to_csv(corpus, index=False)
    from featstore.cli import main

    assert main(featurize_args(corpus, root / "store", model, "--pair-cols", "a", "b",
                               "--cross", "--compute-dtype", "float32")) == 0
    return {"root": root, "store": root / "store", "model": model, "corpus": corpus}


def test_fit_head_on_a_pair_dataset_reports_the_cosine_baseline(pairs, capsys, tmp_path):
    store = pairs["store"]
    code, out, err = run_cli(capsys, "fit-head", "--store", store, "--head", "mlp",
                             "--combine", "u", "v", "absdiff", "product", "cosine",
                             "--symmetric", "--epochs", "30", "--out", "para-mlp",
                             "--report", tmp_path / "rep", "--no-progress")
    assert code == 0, err
    assert "pairs a + b" in out and "positive_f1" in out
    assert "baseline  cosine of the same vectors: accuracy" in out  # mean, as the head
    head = load_head(store, "para-mlp")
    assert head.symmetric and head.head_kind_ == "mlp" and head.text_columns_ == ("a", "b")
    errors = pd.read_csv(tmp_path / "rep" / "errors.csv")
    assert list(errors.columns[:2]) == ["a", "b"]  # both texts of each misclassified pair
    code, out, _ = run_cli(capsys, "fit-head", "--store", store, "--task", "regression",
                           "--label-col", "score", "--json", "--out", "para-ridge",
                           "--no-progress")
    doc = json.loads(out)
    assert code == 0 and doc["head_kind"] == "ridge" and doc["baseline"]["name"] == "cosine"
    assert set(doc["metrics"]) >= {"pearson", "spearman"} and doc["pairs"] == 120


def test_auto_searches_pair_heads_on_training_rows(pairs, capsys):
    code, out, err = run_cli(capsys, "fit-head", "--store", pairs["store"], "--auto",
                             "--budget", "60", "--out", "para-auto", "--json",
                             "--no-progress")
    assert code == 0, err
    doc = json.loads(out)
    names = [c["name"] for c in doc["searches"][0]["candidates"]]
    assert "cosine(mean)" in names and any("cross" in n for n in names)
    assert any(n.startswith("projection") for n in names)  # two classes: a similarity head
    assert doc["baseline"]["metrics"]["accuracy"] > 0
    load_head(pairs["store"], "para-auto")


def test_compare_ranks_bi_and_cross_side_by_side(pairs, capsys, tmp_path):
    code, out, err = run_cli(capsys, "compare", "--store", pairs["store"], "--pools", "mean",
                             "--heads", "logreg", "--charts", tmp_path, "--json",
                             "--no-progress")
    assert code == 0, err
    names = [e["name"] for e in json.loads(out)["leaderboard"]]
    assert set(names) == {"cosine(mean)", "[u,v,|u-v|,u*v](mean) + logreg",
                          "cross(mean) + logreg"}


def test_predict_a_pair_file_and_inline_pairs(pairs, capsys, tmp_path):
    store = pairs["store"]
    run_cli(capsys, "fit-head", "--store", store, "--out", "para-lr", "--overwrite",
            "--no-progress")
    code, out, err = run_cli(capsys, "predict", "--store", store, "--head", "para-lr",
                             "--text-a", "my card is lost", "--text-b", "lost is my card",
                             "--text-a", "help please", "--text-b", "a very good film")
    assert code == 0, err
    table = pd.read_csv(pd.io.common.StringIO(out))
    assert list(table.columns[:3]) == ["a", "b", "prediction"] and len(table) == 2
    assert "encoding" in err  # unseen texts were encoded with the head's encoder
    new = tmp_path / "new.csv"
    pd.DataFrame({"first": ["my bank card", "refund", ""], "second": ["card bank my", "x", "y"],
                  "label": [1, 0, 0]}).to_csv(new, index=False)
    code, out, err = run_cli(capsys, "predict", "--store", store, "--head", "para-lr", new,
                             "--pair-cols", "first", "second", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["rows"] == 2 and doc["skipped"] == 1  # a row with an empty side is left out
    # the file's own labels are kept (CSV cells read as text, as featurize reads them)
    assert [p["label"] for p in doc["predictions"]] == ["1", "0"]
    # a cross head predicts new pairs by encoding them jointly
    code, _, err = run_cli(capsys, "fit-head", "--store", store, "--source", "cross",
                           "--out", "para-cross", "--overwrite", "--no-progress")
    assert code == 0, err
    code, out, err = run_cli(capsys, "predict", "--store", store, "--head", "para-cross",
                             "--text-a", "money transfer", "--text-b", "transfer money")
    assert code == 0 and "prediction" in out, err


REFUSED = {
    "--combine on texts": (["fit-head", "--train", "texts", "--combine", "u"],
                           "--combine applies to pair heads"),
    "--symmetric on texts": (["fit-head", "--train", "texts", "--symmetric"],
                             "--symmetric applies to pair heads"),
    "cosine head on texts": (["fit-head", "--train", "texts", "--head", "cosine"],
                             "pair dataset"),
    "--group-by on pairs": (["fit-head", "--train", "para", "--group-by", "a"],
                            "a pair dataset's rows are pairs"),
    "probe a pair dataset": (["probe-layers", "--train", "para"], "compare"),
    "--text-a alone": (["predict", "--head", "para-lr", "--text-a", "x"], "come in pairs"),
    "--text on a pair head": (["predict", "--head", "para-lr", "--text", "x"],
                              "--text-a A --text-b B"),
    "cosine of the joint encoding": (["fit-head", "--train", "para", "--source", "cross",
                                      "--head", "cosine"], "--source bi"),
    "unlabeled pairs": (["fit-head", "--train", "para", "--auto", "--unlabeled", "para"],
                        "pair heads take none"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_flags_that_do_not_fit_are_refused_in_one_line(pairs, capsys, tmp_path, case):
    store = pairs["store"]
    s = featstore.open(store)
    if "texts" not in s.manifest.datasets:
        corpus = tmp_path / "texts.csv"
        pd.DataFrame({"text": ["my card", "a film", "bank help", "refund"],
                      "label": [0, 1, 0, 1]}).to_csv(corpus, index=False)
        run_cli(capsys, *featurize_args(corpus, store, pairs["model"], "--compute-dtype",
                                        "float32"))
    if "para-lr" not in [h.name for h in (store / "heads").iterdir()]:
        run_cli(capsys, "fit-head", "--store", store, "--train", "para", "--out", "para-lr",
                "--no-progress")
    argv, message = REFUSED[case]
    before = tree_digest(store)
    code, out, err = run_cli(capsys, *argv, "--store", store, "--no-progress")
    assert code == 2, (out, err)
    one_line_error(err)
    assert message in err
    assert tree_digest(store) == before
