"""`fit-head --auto` / `HeadSelector`: the choice is made by inner CV on training rows only, is
deterministic with a seed, keeps to its budget, and the winner is refitted and saved with its
search record; few-shot runs search inside each sample."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_guarantees_support import run_cli
from test_heads_support import toy_store

from featstore.heads import HeadClassifier, load_head
from featstore.heads.ensemble import HeadEnsemble
from featstore.heads.errors import HeadError
from featstore.heads.protocols import plan_evaluation
from featstore.selection.auto import (
    HeadSelector,
    Trial,
    auto_protocol,
    input_width,
    next_fold_seconds,
)
from featstore.selection.candidates import Candidate, default_candidates
from featstore.selection.ensemble_selection import select_ensemble
from featstore.selection.recipes import FEW, STRONG, grown_recipe
from featstore.selection.self_training import pseudo_labels
from featstore.services.head_runs import select_and_save
from featstore.store import open_store

# a small, fast grid whose members really differ on the weak-signal toy store
GRID = [{"pool": "mean", "head": "logreg", "C": 0.01},
        {"pool": "mean", "head": "logreg", "C": 1.0},
        {"pool": "weighted", "of": "mean", "head": "logreg", "C": 1.0},
        {"pool": "cls", "head": "logreg", "C": 0.1},
        {"pool": "mean-max", "head": "mlp", "epochs": 5, "hidden": 16}]


def _store(root, corrupt_eval: bool = False, n: int = 240):
    """Weak planted signal (candidates score differently); `corrupt_eval` shuffles the
    labels of the test rows only."""
    y = np.arange(n) % 3
    labels = [f"c{v}" for v in y]
    if corrupt_eval:
        test = [i for i in range(n) if i % 4 == 0]
        perm = np.random.default_rng(7).permutation(test)
        labels = list(labels)
        for i, j in zip(test, perm, strict=True):
            labels[i] = f"c{(y[j] + 1) % 3}"
    toy_store(root, n=n, strength=0.7, labels=labels)
    return open_store(root)


def _record(s: HeadSelector) -> list[tuple]:
    return [(r["name"], tuple(r["scores"]), r["status"]) for r in s.cv_results_]


def test_search_never_reads_evaluation_labels(tmp_path):
    runs = []
    for corrupt in (False, True):
        store = _store(tmp_path / str(corrupt), corrupt_eval=corrupt)
        plan = plan_evaluation(store, "toy")
        runs.append(auto_protocol(store, plan, budget=300, folds=3, search_space=GRID))
    clean, corrupted = runs
    assert _record(clean.searches[0]) == _record(corrupted.searches[0])
    assert clean.searches[0].best_params_ == corrupted.searches[0].best_params_
    scores = [r["mean"] for r in clean.searches[0].cv_results_ if r["mean"] is not None]
    assert len(set(scores)) > 1  # the candidates really differ; the choice is not a tie-break
    # the corrupted eval labels did reach the evaluation: only the winner's eval score moved
    assert clean.result.metrics["accuracy"] > corrupted.result.metrics["accuracy"] + 0.2


def test_search_is_deterministic_with_its_seed(tmp_path):
    store = _store(tmp_path / "s")
    df = store.dataset("toy")
    train = df[df.split == "train"]
    a = HeadSelector(store, budget=300, search_space=GRID, seed=3,
                     allow_ensemble=False).fit(train)
    b = HeadSelector(store, budget=300, search_space=GRID, seed=3,
                     allow_ensemble=False).fit(train)
    assert _record(a) == _record(b)
    assert a.best_params_ == b.best_params_
    np.testing.assert_allclose(a.predict_proba(df), b.predict_proba(df))
    # racing: every candidate gets the first fold, fewer get the last
    folds = [r["folds"] for r in a.cv_results_]
    assert min(folds) == 1 and max(folds) == 3 and folds.count(3) < len(GRID)
    win = next(r for r in a.cv_results_ if r["status"] == "winner")
    full = [r for r in a.cv_results_ if r["folds"] == 3]
    assert win["mean"] == max(r["mean"] for r in full)


def test_budget_is_kept(tmp_path):
    store = _store(tmp_path / "s")
    df = store.dataset("toy")
    train = df[df.split == "train"]
    tiny = HeadSelector(store, budget=1e-3, search_space=GRID).fit(train)
    scored = [r for r in tiny.cv_results_ if r["folds"]]
    assert len(scored) == 1 and scored[0]["folds"] == 1  # one fold of the cheapest, no more
    assert sum(r["status"] == "out of budget" for r in tiny.cv_results_) == len(GRID) - 1
    # a budget of a few of the cheapest folds, against 20 candidates: it must run out, however
    # fast or loaded the machine is
    budget = 3 * max(scored[0]["seconds"], 0.01)
    mid = HeadSelector(store, budget=budget, search_space=GRID * 4).fit(train)
    longest = max(r["seconds"] / max(1, r["folds"]) for r in mid.cv_results_)
    assert mid.search_seconds_ <= budget + longest + 0.5
    assert any(r["status"].startswith("out of budget") for r in mid.cv_results_)


def test_a_head_not_run_yet_is_budgeted_as_the_slowest_fold_so_far():
    """The budget check before a fold: a candidate's own folds, else its head's slowest fold,
    else (a head never run) the slowest fold of any: never nothing, which let an MLP start a
    fold the budget had no room for."""
    def trial(head, seconds=0.0, folds=0):
        return Trial(Candidate(head, {"head": head}), scores=[0.5] * folds, seconds=seconds)

    fast, slow = trial("logreg", 2.0, 2), trial("logreg", 9.0, 3)
    mlp, fresh = trial("mlp", 40.0, 1), trial("mlp")
    assert next_fold_seconds(fast, [fast, slow]) == 1.0  # its own folds
    assert next_fold_seconds(trial("logreg"), [fast, slow, mlp]) == 3.0  # its head's slowest
    assert next_fold_seconds(fresh, [fast, slow, mlp]) == 40.0
    assert next_fold_seconds(fresh, [fast, slow]) == 3.0  # no MLP scored: the slowest of any
    assert next_fold_seconds(fresh, [trial("logreg")]) == 0.0  # nothing scored: the first runs


@pytest.mark.parametrize("wide,factor", [
    ({"pool": "concat", "of": "mean-max", "layers": [0, 1, 2, 3, 4, 5, 6]}, 14),
    ({"pool": "mean-max"}, 2), ({"pool": "concat"}, 4),  # concat: the top four layers
    ({"pool": "mean", "combine": ["u", "v", "absdiff", "product"]}, 4),
    ({"pool": "mean-max", "combine": ["absdiff", "cosine", "align"]}, 2),
    ({"pool": "cls"}, 1)])
def test_a_wider_candidate_of_a_scored_head_is_budgeted_by_its_width(wide, factor):
    """A candidate reading k times the stored vectors of a scored candidate with the same
    head is budgeted at k times its folds, never less than them."""
    narrow = Trial(Candidate("n", {"pool": "mean", "head": "mlp"}), scores=[0.5, 0.5],
                   seconds=6.0)
    fresh = Trial(Candidate("w", {**wide, "head": "mlp"}))
    assert next_fold_seconds(fresh, [narrow]) == pytest.approx(3.0 * factor)
    assert input_width({**wide, "head": "mlp"}) == factor


def test_winner_is_refitted_and_saved_with_its_search(tmp_path, capsys):
    _store(tmp_path / "s")
    code, out, err = run_cli(capsys, "fit-head", "--store", tmp_path / "s", "--auto",
                             "--budget", "120", "--folds", "2", "--out", "auto", "--json",
                             "--no-progress")
    assert code == 0, err
    res = json.loads(out)
    doc = json.loads((tmp_path / "s" / "heads" / "auto" / "head.json").read_text())
    search = doc["search"]
    assert search["folds"] == 2 and search["winner"] == res["searches"][0]["winner"]
    names = {r["name"] for r in search["candidates"]}
    assert len(names) == len(default_candidates(open_store(tmp_path / "s"), rows_per_class=60))
    assert doc["fit"]["rows"] == 180  # refitted on every training row, not a fold
    head = load_head(tmp_path / "s", "auto")
    store = open_store(tmp_path / "s")
    test = store.dataset("toy").query("split == 'test'")
    assert head.score(store, test) == pytest.approx(res["metrics"]["accuracy"])
    code, text, _ = run_cli(capsys, "fit-head", "--store", tmp_path / "s", "--auto",
                            "--budget", "5", "--out", "auto2", "--no-progress")
    assert code == 0 and "inner accuracy" in text and "winner" in text


def test_few_shot_searches_inside_each_sample(tmp_path):
    store = _store(tmp_path / "s")
    plan = plan_evaluation(store, "toy")
    saved = select_and_save(store, plan, shots=4, repeats=2, seed=1, budget=200,
                            search_space=GRID[:3], name="few")
    assert len(saved.searches) == 2 and len(saved.result.runs) == 2
    for s in saved.searches:
        assert s.best_estimator_.fit_info_["rows"] == 12  # 4 shots x 3 classes
        assert s.n_folds_ == 3
    samples = [s.best_estimator_.predict_proba(store, plan.eval) for s in saved.searches]
    assert not np.allclose(samples[0], samples[1])  # different samples, different heads
    doc = json.loads((tmp_path / "s" / "heads" / "few" / "head.json").read_text())
    assert doc["evaluation"]["shots"] == 4 and len(doc["other_searches"]) == 1


def test_compare_save_best_chooses_without_the_eval_set(tmp_path, capsys):
    winners = []
    for corrupt in (False, True):
        root = tmp_path / str(corrupt)
        _store(root, corrupt_eval=corrupt)
        code, _, err = run_cli(capsys, "compare", "--store", root, "--pools", "mean", "cls",
                               "mean-max", "--heads", "logreg", "--plot", tmp_path / "c.png",
                               "--overwrite", "--no-progress", "--save-best", "best",
                               "--folds", "2")
        assert code == 0, err
        doc = json.loads((root / "heads" / "best" / "head.json").read_text())
        winners.append((doc["search"]["winner"], doc["search"]["winner_inner_score"]))
    assert winners[0] == winners[1]


@pytest.mark.parametrize("argv, msg", [
    (["--budget", "30"], "add --auto"),
    (["--folds", "4"], "add --auto"),
    (["--auto", "--head", "mlp"], "drop --head"),
    (["--auto", "--pool", "cls"], "drop --pool"),
    (["--auto", "--budget", "-5"], "must be positive"),
    (["--auto", "--folds", "1"], "must be at least 2"),
    (["--unlabeled", "toy"], "add --auto"),
    (["--auto", "--unlabeled", "toy", "--task", "regression"], "needs --task classification"),
    (["--auto", "--unlabeled", "nope"], "neither a dataset"),
])
def test_bad_auto_flags_are_one_line_errors(tmp_path, capsys, argv, msg):
    _store(tmp_path / "s", n=60)
    code, out, err = run_cli(capsys, "fit-head", "--store", tmp_path / "s", *argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and msg in err
    assert not (tmp_path / "s" / "heads").exists()


def test_library_refuses_bad_search_settings(tmp_path):
    store = _store(tmp_path / "s", n=60)
    df = store.dataset("toy")
    for kwargs, msg in (({"budget": 0}, "budget"), ({"folds": 1}, "folds"),
                        ({"budget": float("nan")}, "budget")):
        with pytest.raises(HeadError, match=msg):
            HeadSelector(store, search_space=GRID, **kwargs).fit(df)
    one = df.iloc[:4].assign(label=["c0", "c0", "c1", "c2"])
    with pytest.raises(HeadError, match="at least 2 examples of every class"):
        HeadSelector(store, search_space=GRID).fit(one)


def test_select_ensemble_keeps_a_mix_only_when_it_is_more_accurate():
    truth = np.array([0, 0, 1, 1])
    # a is right on rows 0 and 2 with confidence and wrong on 1 and 3 by a little; b mirrors it
    a = np.array([[0.9, 0.1], [0.45, 0.55], [0.1, 0.9], [0.55, 0.45]])
    b = np.array([[0.45, 0.55], [0.9, 0.1], [0.55, 0.45], [0.1, 0.9]])
    picks, acc = select_ensemble([a, b], truth)
    assert picks == [1, 1] and acc == 1.0  # each alone: 0.5; their average: every row right
    # a candidate that is right everywhere needs no partner, whatever else is offered
    picks, acc = select_ensemble([a, np.eye(2)[truth] * 0.8 + 0.1, b], truth)
    assert picks == [0, 1, 0] and acc == 1.0


def test_search_mixes_finalists_when_inner_folds_prefer_it(tmp_path):
    store = _store(tmp_path / "s")
    df = store.dataset("toy")
    train, test = df[df.split == "train"], df[df.split == "test"]
    s = HeadSelector(store, budget=300, search_space=GRID, seed=0).fit(train)
    mix = s.ensemble_
    assert mix["chosen"] and mix["inner_score"] > mix["single_best_inner_score"]
    assert isinstance(s.best_estimator_, HeadEnsemble) and s.best_score_ == mix["inner_score"]
    members = s.best_estimator_.members_
    assert len(members) == len(mix["members"]) >= 2
    assert all(m.fit_info_["rows"] == len(train) for m in members)  # refitted on all rows
    # the mix is the weighted average of its members' probabilities
    w = np.array([m["picks"] for m in mix["members"]], dtype=float)
    expect = sum(wi / w.sum() * m.predict_proba(store, test)
                 for wi, m in zip(w, members, strict=True))
    np.testing.assert_allclose(s.predict_proba(store, test), expect, rtol=1e-6)
    # saved as one head; it loads and predicts the same, from the CLI too
    s.save(store, "mix")
    again = load_head(tmp_path / "s", "mix")
    assert isinstance(again, HeadEnsemble)
    np.testing.assert_allclose(again.predict_proba(store, test), expect, rtol=1e-6)
    assert list(again.predict(store, test)) == list(s.predict(store, test))
    doc = json.loads((tmp_path / "s" / "heads" / "mix" / "head.json").read_text())
    assert doc["kind"] == "ensemble" and doc["search"]["ensemble"]["chosen"]
    with pytest.raises(HeadError, match="ensemble of heads"):
        HeadClassifier.load(tmp_path / "s", "mix")
    # the same search without ensembles keeps its single winner
    single = HeadSelector(store, budget=300, search_space=GRID, seed=0,
                          allow_ensemble=False).fit(train)
    assert not isinstance(single.best_estimator_, HeadEnsemble)
    assert single.ensemble_ == {"chosen": False, "why": "ensembles are off"}


def test_ensemble_head_predicts_from_the_command_line(tmp_path, capsys):
    store = _store(tmp_path / "s")
    texts = store.dataset("toy").text.tolist()[:5]
    head = HeadEnsemble([GRID[0], GRID[2]], [2, 1]).fit(store, "toy")
    head.save(store, "pair")
    code, out, err = run_cli(capsys, "predict", "--store", tmp_path / "s", "--head", "pair",
                             "--json", "--no-progress",
                             *[a for t in texts for a in ("--text", t)])
    assert code == 0, err
    got = [r["prediction"] for r in json.loads(out)["predictions"]]
    assert got == list(head.predict(store, texts))
    assert head.weights_.tolist() == pytest.approx([2 / 3, 1 / 3])
    with pytest.raises(HeadError, match="positive weights"):
        HeadEnsemble([GRID[0], GRID[2]], [1, 0]).fit(store, "toy")


def test_racing_keeps_candidates_within_two_standard_errors_of_the_leader():
    from featstore.selection.auto import Trial, _survivors
    from featstore.selection.candidates import Candidate

    ranked = [Trial(Candidate(str(m), {}), scores=[m]) for m in (0.92, 0.915, 0.90, 0.85)]
    # 3,000 held-out rows: the error at 92% is 0.5 points, so 2 SE = 1 point behind the leader
    assert _survivors(ranked, 3000, "classification") == 2
    # 300 rows: 3.1 points; 30,000 rows: still at least two go on
    assert _survivors(ranked, 300, "classification") == 3
    assert _survivors(ranked, 30000, "classification") == 2
    assert _survivors(ranked, 300, "regression") == 2  # the better half


def test_auto_reports_the_winner_on_the_evaluation_rows(tmp_path, capsys):
    import pandas as pd

    _store(tmp_path / "s")
    rep = tmp_path / "rep"
    args = ("fit-head", "--store", tmp_path / "s", "--auto", "--budget", "120", "--folds", "2",
            "--report", rep, "--no-progress")
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    res = json.loads(out)
    errors = pd.read_csv(rep / "errors.csv")
    classes = pd.read_csv(rep / "classes.csv")
    assert len(errors) == round((1 - res["metrics"]["accuracy"]) * res["eval_rows"])
    assert (errors.gold != errors.predicted).all() and set(classes.label) == {"c0", "c1", "c2"}
    assert classes.support.sum() == res["eval_rows"]
    assert (rep / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert res["report"]["errors"] == str(rep / "errors.csv")
    # the report is never replaced silently, and the refusal comes before any search
    code, _, err = run_cli(capsys, *args, "--out", "again")
    assert code == 2 and "--overwrite" in err and "\n" not in err.strip()
    assert not (tmp_path / "s" / "heads" / "again").exists()


def test_pseudo_labels_take_each_class_its_most_confident_rows():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.45, 0.55], [0.7, 0.3],
                      [0.1, 0.9], [0.3, 0.7]])
    # class 0 (rows 0, 1, 4 predicted) may take 1 x its 2 labeled rows; class 1 (rows 2, 3, 5,
    # 6) 1 x its 1 labeled row
    idx, cls = pseudo_labels(probs, np.array([2, 1]), factor=1)
    assert idx.tolist() == [0, 4, 5] and cls.tolist() == [0, 0, 1]
    # factor 3: class 0 takes all 3 rows predicted as it (fewer than 6), class 1 its 3 most
    # confident of 4 (row 3, at 0.55, is left out)
    idx, cls = pseudo_labels(probs, np.array([2, 1]), factor=3)
    assert idx.tolist() == [0, 1, 2, 4, 5, 6] and cls.tolist() == [0, 0, 1, 0, 1, 1]
    assert pseudo_labels(probs, np.array([0, 0]))[0].tolist() == []


def test_grown_recipe_swaps_only_the_few_shot_training_settings():
    few = {**FEW, "layers": [5, 6], "ensemble": 1}
    grown = grown_recipe(few)
    assert {k: grown[k] for k in ("batch_size", "epochs", "lr", "dropout")} == \
        {"batch_size": STRONG["batch_size"], "epochs": STRONG["epochs"], "lr": STRONG["lr"],
         "dropout": 0.5}
    assert grown["layers"] == [5, 6] and grown["ensemble"] == 1
    for other in (STRONG, {"pool": "mean", "head": "logreg", "C": 1.0}):
        assert grown_recipe(other) == other


def test_self_training_uses_unlabeled_training_rows_never_evaluation_rows(tmp_path):
    store = _store(tmp_path / "s", n=600)  # 450 train-split rows, 150 test-split rows
    plan = plan_evaluation(store, "toy")
    grid = GRID[:2]
    run = auto_protocol(store, plan, shots=8, repeats=1, budget=300, search_space=grid,
                          unlabeled="toy")
    s = run.searches[0]
    st = s.self_training_
    # the pool: the dataset's rows less the 150 evaluation rows and the 24 labeled ones
    assert st["unlabeled_rows"] == 450 - 24
    assert len(st["pseudo_rows_per_fold"]) == s.n_folds_
    # each fold's 16 labeled rows cap the pseudo-labels at 20 x 16 (of 426); the final refit's
    # 24 at 480, so every pool row joins it
    assert st["pseudo_rows_per_fold"] == [320] * s.n_folds_
    # on this weak signal, eight examples per class gain from 426 unlabeled ones
    assert st["inner_score_with"] > st["inner_score_without"] and st["chosen"]
    assert s.best_estimator_.fit_info_["rows"] == 24 + st["pseudo_rows"] == 24 + 426
    assert s.record()["self_training"] == st
    # the same search without unlabeled rows: the same winner, fitted on the 24 rows alone
    plain = auto_protocol(store, plan, shots=8, repeats=1, budget=300, search_space=grid)
    assert plain.searches[0].self_training_ == {"chosen": False, "why": "no unlabeled rows"}
    assert plain.searches[0].best_estimator_.fit_info_["rows"] == 24
    assert s.best_name_ == plain.searches[0].best_name_
    assert run.result.metrics["accuracy"] > plain.result.metrics["accuracy"]


def test_self_training_is_not_kept_when_the_inner_folds_see_no_gain(tmp_path):
    toy_store(tmp_path / "s", n=600, strength=1.5)  # strong signal: 8 examples already suffice
    store = open_store(tmp_path / "s")
    run = auto_protocol(store, plan_evaluation(store, "toy"), shots=8, repeats=1, budget=300,
                          search_space=GRID[:2], unlabeled="toy")
    st = run.searches[0].self_training_
    assert st["inner_score_with"] == st["inner_score_without"] == 1.0 and not st["chosen"]
    assert "did not beat" in st["why"] and "pseudo_rows" not in st
    assert run.searches[0].best_estimator_.fit_info_["rows"] == 24
    # unlabeled rows that are all among the labeled ones leave no pool
    df = store.dataset("toy")
    train = df[df.split == "train"]
    s = HeadSelector(store, budget=300, search_space=GRID[:2]).fit(train, unlabeled=train)
    assert s.self_training_ == {"chosen": False, "why": "no unlabeled rows"}


def test_fit_head_auto_prints_the_self_training_line(tmp_path, capsys):
    _store(tmp_path / "s", n=600)
    code, out, err = run_cli(capsys, "fit-head", "--store", tmp_path / "s", "--auto",
                             "--budget", "120", "--shots", "8", "--unlabeled", "toy",
                             "--no-progress")
    assert code == 0, err
    line = next(ln for ln in out.splitlines() if ln.startswith("self-train"))
    assert "426 unlabeled rows" in line
    doc = json.loads((tmp_path / "s" / "heads" / "toy-auto" / "head.json").read_text())
    assert doc["search"]["self_training"]["unlabeled_rows"] == 426


@pytest.mark.parametrize("extra", [[], ["--auto", "--budget", "5"]])
def test_an_ambiguous_encoder_is_refused_before_any_progress_bar(tmp_path, capsys, extra):
    """Two encoders and no --model: one line on stderr, no half-drawn bar before it."""
    from test_heads_support import build_store, make_features

    _store(tmp_path / "s", n=60)
    texts = [f"other text {i}" for i in range(30)]
    build_store(tmp_path / "s", texts, {"label": ["a", "b"] * 15},
                make_features(np.arange(30) % 2, np.random.default_rng(1), 3, 1.0),
                name="other", encoder_id="enc-other", model="other-model")
    code, out, err = run_cli(capsys, "fit-head", "--store", tmp_path / "s", "--train", "toy",
                             *extra)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and not out and len(lines) == 1, err
    assert "several encoders" in lines[0] and "--model" in lines[0]
