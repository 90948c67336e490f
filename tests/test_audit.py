"""`featstore audit`: planted near-duplicates, leaked evaluation rows and flipped labels are
found; files are refused unless --overwrite; the summary, --json and the map are what a person
reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from test_guarantees_support import one_line_error, run_cli, tree_digest

from featstore.services.audit import audit, audit_paths
from featstore.store import StoreWriter, keys_for

WIDTH = 48
LAYERS = [0, 1, 2]
N_TRAIN, N_EVAL = 300, 60
FLIPPED = [7, 41, 88, 123, 150, 199, 233, 270]
NEAR_PAIRS = [(10, 201), (20, 111)]  # two training texts with nearly the same vector
EXACT_REPEAT = (30, 299)  # row 299 repeats row 30's text
LEAKED = {0: 50, 1: 51, 2: 52, 3: 53, 4: 54}  # eval row -> its near-twin in training
LEAKED_EXACT = (5, 60)  # eval row 5 is training row 60's very text


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("audit") / "store"
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, WIDTH)) * 2.0
    y = np.arange(N_TRAIN + N_EVAL) % 3
    vec = centres[y] + rng.normal(size=(len(y), WIDTH))
    texts = [f"train text {i}" for i in range(N_TRAIN)] + [f"eval text {i}" for i in range(N_EVAL)]
    for a, b in NEAR_PAIRS:
        vec[b] = vec[a] + 0.01 * rng.normal(size=WIDTH)
        y[b] = y[a]
    texts[EXACT_REPEAT[1]] = texts[EXACT_REPEAT[0]]
    for e, t in LEAKED.items():
        vec[N_TRAIN + e] = vec[t] + 0.01 * rng.normal(size=WIDTH)
        y[N_TRAIN + e] = y[t]
    texts[N_TRAIN + LEAKED_EXACT[0]] = texts[LEAKED_EXACT[1]]
    y[N_TRAIN + LEAKED_EXACT[0]] = y[LEAKED_EXACT[1]]
    labels = [f"class{v}" for v in y]
    for i in FLIPPED:
        labels[i] = f"class{(y[i] + 1) % 3}"
    first: dict[str, int] = {}
    for i, t in enumerate(texts):
        first.setdefault(t, i)
    rows = list(first.values())
    layered = np.repeat(vec[rows, None, :], len(LAYERS), axis=1).astype(np.float16)
    feats = {"mean": layered, "max": layered, "cls": layered}
    fp = {"kind": "encoder", "model": "toy", "layers": LAYERS, "hidden": WIDTH}
    with StoreWriter(root) as w:
        w.ensure_encoder("enc", fp, "float16", {k: list(v.shape[1:]) for k, v in feats.items()})
        w.commit_shard("enc", w.write_shard_file("enc", [keys_for([texts[i]])[0] for i in rows],
                                                 feats))
        for name, part in (("train", slice(0, N_TRAIN)), ("test", slice(N_TRAIN, None))):
            t = texts[part]
            w.commit_dataset(name, pa.table({"_key": keys_for(t), "text": t,
                                             "label": labels[part]}),
                             text_column="text", source="synthetic", encoders=["enc"],
                             skipped=0)
    return root


@pytest.fixture(scope="module")
def result(planted, tmp_path_factory):
    out = audit_paths(tmp_path_factory.mktemp("out") / "audit", "train", False)
    return audit(planted, "train", "test", out=out, folds=3, threshold=0.99), out


def test_near_duplicates_and_leakage_are_found(result):
    res, out = result
    dup = pd.read_csv(out["duplicates"])
    within = dup[dup["kind"] == "within train"]
    groups = {frozenset(g["row"]) for _, g in within.groupby("group")}
    assert groups == {frozenset(p) for p in NEAR_PAIRS} | {frozenset(EXACT_REPEAT)}
    assert res.groups_within == 3 and res.exact_duplicate_rows == 1
    leaked = dup[dup["leaked"]]
    assert sorted(leaked["row"]) == sorted([*LEAKED, LEAKED_EXACT[0]])
    assert res.leaked_rows == 6 and res.leaked_exact == 1 and res.eval_rows == N_EVAL
    twins = dict(zip(leaked["row"], leaked["twin"], strict=True))
    assert all(twins[e] == f"train text {t}" for e, t in LEAKED.items())
    assert (leaked["score"] >= 0.99).all()
    assert dup.columns.tolist() == ["group", "kind", "set", "row", "text", "label", "score",
                                    "twin", "leaked"]


def test_flipped_labels_lead_the_label_issues(result):
    res, out = result
    issues = pd.read_csv(out["label_issues"])
    assert issues.columns.tolist() == ["rank", "row", "text", "given_label", "suggested_label",
                                       "score", "p_suggested"]
    flagged = set(issues["row"])
    found = flagged & set(FLIPPED)
    assert len(found) >= 7  # recall
    assert len(found) / len(flagged) >= 0.7  # precision
    assert issues["score"].is_monotonic_increasing  # most likely errors first
    row = issues[issues["row"] == FLIPPED[0]].iloc[0]
    assert row["given_label"] != row["suggested_label"]
    assert res.label_issues == len(issues) and res.head.startswith("mean-max")


def test_the_map_is_a_png_with_everything_marked(result):
    res, out = result
    assert out["map"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res.map_method.startswith("t-SNE of 360 rows")


def test_summary_names_the_findings(result):
    res, _ = result
    text = res.text()
    assert "6 of 60 eval rows (10.0%) have a near-twin in train (1 with identical vectors)" in text
    assert "3 groups within train" in text
    assert f"confident learning flags {res.label_issues} rows" in text


def test_cli_refuses_existing_files_then_overwrites(planted, tmp_path, capsys):
    out = tmp_path / "a"
    out.mkdir()
    (out / "map.png").write_bytes(b"mine")
    before = tree_digest(planted)
    code, _, err = run_cli(capsys, "audit", "--store", planted, "--train", "train", "--eval",
                           "test", "--out", out, "--cv", "3", "--no-progress")
    assert code == 2
    one_line_error(err)
    assert "--overwrite" in err and (out / "map.png").read_bytes() == b"mine"
    code, stdout, err = run_cli(capsys, "audit", "--store", planted, "--train", "train",
                                "--eval", "test", "--out", out, "--cv", "3", "--overwrite",
                                "--json", "--no-progress")
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["leaked_rows"] == 6 and doc["threshold"] == 0.98
    assert (out / "map.png").read_bytes()[:4] == b"\x89PNG"
    assert tree_digest(planted) == before  # an exact search keeps no index


@pytest.mark.parametrize("argv,message", [
    (["--train", "nope"], "neither a dataset"),
    (["--train", "train", "--eval", "test", "--label-col", "missing"], "missing"),
    (["--train", "train", "--threshold", "1.5"], "--threshold"),
    (["--train", "train", "--cv", "1"], "--cv"),
    (["--train", "train", "--pool", "lstm"], "learned by a head"),
])
def test_cli_bad_input_is_one_line(planted, tmp_path, capsys, argv, message):
    before = tree_digest(planted)
    code, _, err = run_cli(capsys, "audit", "--store", planted, *argv, "--out", tmp_path / "o",
                           "--no-progress")
    assert code == 2
    one_line_error(err)
    assert message in err
    assert tree_digest(planted) == before


def test_the_map_marks_the_suspects_and_names_its_axes(tmp_path, monkeypatch):
    from featstore.reports import embedding_map

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 16)) * 3.0
    labels = np.repeat(["a", "b", "c"], 40)
    vectors = centres[np.repeat(np.arange(3), 40)] + rng.normal(size=(120, 16))
    is_eval = np.arange(120) % 4 == 0
    suspect = np.isin(np.arange(120), [1, 2, 3])
    leaked = np.isin(np.arange(120), [0, 4])
    drawn = []
    with monkeypatch.context() as m:
        m.setattr(embedding_map.plt, "close", lambda fig: drawn.append(fig))
        method = embedding_map.draw_map(vectors, labels, is_eval, suspect, leaked,
                                        tmp_path / "map.png", "toy")
    (fig,) = drawn
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["training text (90); colour = its label", "evaluation text (30)",
                      "suspected label error (3)",
                      "evaluation text with a near-twin in training (2)", "a", "b", "c"]
    assert ax.get_xlabel().startswith("t-SNE dimension 1")
    assert ax.get_ylabel() == "t-SNE dimension 2"
    # training points, evaluation points, the crosses, the triangles
    assert [len(c.get_offsets()) for c in ax.collections] == [90, 30, 3, 2]
    assert method == "t-SNE of 120 rows"
    image = plt_image(tmp_path / "map.png")
    red = (image[..., 0] > 0.95) & (image[..., 1] < 0.05) & (image[..., 2] < 0.05)
    assert red.sum() > 0  # the leaked rows' triangles are drawn in red


def plt_image(path: Path) -> np.ndarray:
    import matplotlib.image

    return matplotlib.image.imread(path)


def test_a_large_map_is_a_sample_that_keeps_every_marked_row():
    from featstore.reports.embedding_map import sample_rows

    keep = np.array([3, 99_999, 50_000, 3])
    rows = sample_rows(100_000, keep, seed=0, limit=1000)
    assert len(rows) == 1000 and set(keep) <= set(rows.tolist())
    assert np.all(np.diff(rows) > 0)
    assert np.array_equal(rows, sample_rows(100_000, keep, seed=0, limit=1000))
    assert np.array_equal(sample_rows(500, keep[:1], seed=0, limit=1000), np.arange(500))
