"""Regression stacks: `--auto` on a regression task combines the candidates scored on every inner
fold by a ridge regression over their out-of-fold predictions, and keeps the stack only when its
own out-of-fold score beats the best single candidate's; the stack predicts its intercept plus
its members' weighted predictions, saves and loads as one head, for texts and for pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.linear_model import Ridge
from test_guarantees_support import run_cli
from test_heads_support import HIDDEN, LAYERS, build_store

from featstore.heads import HeadClassifier, HeadError, HeadRegressor, ParamError, load_head
from featstore.heads.ensemble_regressor import EnsembleRegressor
from featstore.heads.pair_estimator import PairRegressor
from featstore.heads.splits import inner_folds
from featstore.selection.auto import HeadSelector, Trial
from featstore.selection.candidates import Candidate
from featstore.selection.ensemble_selection import STACK_ALPHA, stack_regressors
from featstore.store import open_store

CLS = {"pool": "cls", "head": "linear", "lr": 0.03, "epochs": 60, "valid_fraction": 0.0}
MEAN = {"pool": "mean", "head": "linear", "lr": 0.03, "epochs": 60, "valid_fraction": 0.0}


@pytest.fixture(scope="module")
def halves(tmp_path_factory):
    """A target that is the sum of two signals, one carried only by the CLS vectors, the
    other only by the mean vectors: each alone explains half of it."""
    rng = np.random.default_rng(0)
    n = 360
    a, b = rng.normal(size=n), rng.normal(size=n)
    y = a + b + 0.05 * rng.normal(size=n)
    feats = {f: rng.normal(size=(n, len(LAYERS), HIDDEN)) * 0.1 for f in ("cls", "mean", "max")}
    feats["cls"][:, :, 0] += a[:, None]
    feats["mean"][:, :, 0] += b[:, None]
    root = build_store(tmp_path_factory.mktemp("stack") / "s", [f"text {i}" for i in range(n)],
                       {"y": y.round(5).tolist(),
                        "split": ["test" if i % 4 == 0 else "train" for i in range(n)]},
                       {k: v.astype(np.float16) for k, v in feats.items()})
    store = open_store(root)
    df = store.dataset("toy")
    return store, df[df.split == "train"].reset_index(drop=True), \
        df[df.split == "test"].reset_index(drop=True)


def test_the_stack_is_a_ridge_over_the_predictions_on_their_own_scales():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=400)
    p1 = truth + 0.8 * rng.normal(size=400)
    p2 = 10 * (truth + 0.8 * rng.normal(size=400)) + 3  # another scale and offset
    folds = [(np.flatnonzero(np.arange(400) % 4 != k), np.flatnonzero(np.arange(400) % 4 == k))
             for k in range(4)]
    def pearson(t, p):
        return float(np.corrcoef(t, p)[0, 1])

    weights, intercept, crossed = stack_regressors([p1, p2], truth, folds, pearson)
    x = np.column_stack([p1, p2])
    z = (x - x.mean(0)) / x.std(0)
    expected = Ridge(alpha=STACK_ALPHA).fit(z, truth).predict(z)
    np.testing.assert_allclose(intercept + x @ weights, expected, atol=1e-9)
    assert weights[0] > 0 and weights[1] > 0 and weights[0] > 5 * weights[1]  # scale undone
    # averaging two independent errors beats either prediction, out of fold too
    assert crossed > max(pearson(truth, p1), pearson(truth, p2)) + 0.03
    # a constant column gets no weight and breaks nothing
    w, b, _ = stack_regressors([p1, np.full(400, 2.0)], truth, folds, pearson)
    assert np.isfinite(b) and w[1] == 0.0


def test_an_ensemble_regressor_predicts_its_intercept_plus_weighted_members(halves):
    store, train, test = halves
    stack = EnsembleRegressor([CLS, MEAN], [0.7, -0.2], 0.5, label_col="y").fit(store, train)
    one = HeadRegressor(**CLS, label_col="y").fit(store, train).predict(store, test)
    two = HeadRegressor(**MEAN, label_col="y").fit(store, train).predict(store, test)
    np.testing.assert_allclose(stack.predict(store, test), 0.5 + 0.7 * one - 0.2 * two,
                               rtol=1e-6, atol=1e-6)
    truth, out = stack.truth_and_output(store, test, None)
    np.testing.assert_allclose(truth, test["y"].to_numpy(), atol=1e-9)
    np.testing.assert_allclose(out, stack.predict(store, test), atol=1e-9)


@pytest.mark.parametrize("weights, intercept, says", [
    ([1.0], 0.0, "needs as many finite {weights}"),
    ([1.0, float("nan")], 0.0, "needs as many finite {weights}"),
    ([1.0, 1.0], float("inf"), "{intercept} must be a finite number"),
])
def test_bad_stack_parameters_are_one_line(halves, weights, intercept, says):
    store, train, _ = halves
    with pytest.raises(ParamError) as err:
        EnsembleRegressor([CLS, MEAN], weights, intercept, label_col="y").fit(store, train)
    assert says.replace("{", "").replace("}", "") in str(err.value).replace("--", "")
    assert "\n" not in str(err.value)


def test_auto_stacks_regressors_that_each_see_half_the_signal(halves):
    store, train, test = halves
    sel = HeadSelector(store, task="regression", label_col="y", folds=3, budget=120,
                       search_space=[CLS, MEAN]).fit(store, train)
    rec = sel.ensemble_
    assert rec["chosen"] and isinstance(sel.best_estimator_, EnsembleRegressor)
    assert rec["inner_score"] > rec["single_best_inner_score"] + 0.1
    assert sel.best_name_.startswith("stack of ")
    assert {r["status"].split(" (")[0] for r in sel.cv_results_} == {"in the stack"}
    pred = sel.best_estimator_.predict(store, test)
    assert spearmanr(pred, test["y"])[0] > 0.9
    for params in (CLS, MEAN):
        alone = HeadRegressor(**params, label_col="y").fit(store, train).predict(store, test)
        assert spearmanr(alone, test["y"])[0] < 0.8
    # the weights are the stack's, fitted on the training rows' out-of-fold predictions
    weights = [m["weight"] for m in rec["members"]]
    np.testing.assert_allclose(sel.best_estimator_.weights_, weights)
    # off: the best single candidate
    single = HeadSelector(store, task="regression", label_col="y", folds=3, budget=120,
                          search_space=[CLS, MEAN], allow_ensemble=False).fit(store, train)
    assert isinstance(single.best_estimator_, HeadRegressor)
    assert single.ensemble_ == {"chosen": False, "why": "ensembles are off"}


def test_a_stack_that_does_not_help_is_not_kept(halves):
    """Two candidates that see the same half: the stack cannot beat the better one by much,
    and is kept only if its out-of-fold score is higher."""
    store, train, _ = halves
    sel = HeadSelector(store, task="regression", label_col="y", folds=3, budget=120,
                       search_space=[MEAN, {**MEAN, "layers": [2]}]).fit(store, train)
    rec = sel.ensemble_
    assert rec["chosen"] == (rec["inner_score"] > rec["single_best_inner_score"])
    if not rec["chosen"]:
        assert isinstance(sel.best_estimator_, HeadRegressor)


def test_a_saved_stack_loads_predicts_and_lists_as_a_stack(halves, capsys):
    store, train, test = halves
    sel = HeadSelector(store, task="regression", label_col="y", folds=3, budget=120,
                       search_space=[CLS, MEAN]).fit(store, train)
    sel.save(store, "stacked")
    back = load_head(store, "stacked")
    assert isinstance(back, EnsembleRegressor)
    np.testing.assert_allclose(back.predict(store, test), sel.predict(store, test), atol=1e-5)
    assert back.intercept == pytest.approx(sel.ensemble_["intercept"])
    code, out, err = run_cli(capsys, "heads", "list", "--store", store.root)
    assert code == 0, err
    assert "stacked: stack of 2, intercept" in out
    code, out, err = run_cli(capsys, "predict", "--store", store.root,
                             "--head", "stacked", "--text", "text 0", "--json")
    assert code == 0, err
    got = json.loads(out)
    first = got["predictions"][0]
    assert first["prediction"] == pytest.approx(float(back.predict(store, ["text 0"])[0]),
                                                abs=1e-4)


def test_pair_regression_stacks_too(tmp_path):
    from pair_support import planted_pair_store

    store = open_store(planted_pair_store(tmp_path / "s"))
    df = store.dataset("pairs")
    train = df[df.split == "train"].reset_index(drop=True)
    space = [{"head": "cosine", "pool": "mean", "layers": [2]},
             {"head": "ridge", "pool": "mean", "layers": [2],
              "combine": ["u", "v", "absdiff", "product"]},
             {"head": "ridge", "pool": "max", "layers": [2], "combine": ["cosine"]}]
    sel = HeadSelector(store, task="regression", label_col="score", folds=3, budget=120,
                       search_space=space).fit(store, train)
    rec = sel.ensemble_
    assert rec["method"].startswith("ridge regression (stacking)")
    finalists = [r for r in sel.cv_results_ if r["folds"] == 3]
    assert len(rec["members"]) == len(finalists) >= 2  # the candidates scored on every fold
    assert rec["chosen"] == (rec["inner_score"] > rec["single_best_inner_score"])
    if rec["chosen"]:
        stack = sel.best_estimator_
        assert stack.unit == "pair" and all(isinstance(m, PairRegressor)
                                            for m in stack.members_)
        members = [m.predict(store, train) for m in stack.members_]
        np.testing.assert_allclose(stack.predict(store, train),
                                   stack.intercept + sum(w * p for w, p in
                                                         zip(stack.weights_, members,
                                                             strict=True)), atol=1e-6)


def test_a_stack_whose_member_is_not_a_regressor_is_refused_as_damaged(halves):
    store, train, _ = halves
    clf = HeadClassifier(pool="mean", head="logreg", C=1.0).fit(store, train,
                                                                (train["y"] > 0).tolist())
    arrays, member = clf.artifact()
    doc = {"config": {"weights": [1.0], "intercept": 0.0, "label_col": "y", "unit": "text"},
           "members": [member]}
    with pytest.raises(HeadError, match=r"^head bad: member 0 is not a regressor \(damaged\)$"):
        EnsembleRegressor.restore(doc, {f"m0.{k}": v for k, v in arrays.items()}, "bad", store)


def test_fit_head_auto_on_a_regression_task_says_it_stacked(halves, capsys):
    store, _, _ = halves
    code, out, err = run_cli(capsys, "fit-head", "--store", store.root, "--label-col", "y",
                             "--task", "regression", "--auto", "--budget", "60",
                             "--out", "cli-stack", "--no-progress")
    assert code == 0, err
    lines = out.splitlines()
    stack = next(line for line in lines if line.startswith("stack "))
    assert stack.endswith(": chosen")
    winner = next(line for line in lines if line.startswith("winner "))
    assert winner.split(None, 1)[1].startswith("stack of ")
    spearman = next(line for line in lines if line.startswith("spearman "))
    assert float(spearman.split()[-1]) > 0.9  # each half alone reaches about 0.7
    assert isinstance(load_head(store, "cli-stack"), EnsembleRegressor)


def test_a_regression_search_scores_every_candidate_on_every_fold_for_the_stack(halves):
    """Racing would drop the weakest candidate after the first fold; the stack may still give
    it weight, so with mixes allowed every candidate runs every fold (the budget permitting),
    and without them the better half goes on as before."""
    store, train, _ = halves
    weak = {"pool": "max", "head": "linear", "lr": 0.03, "epochs": 60, "valid_fraction": 0.0}
    space = [CLS, MEAN, weak]
    kept = HeadSelector(store, task="regression", label_col="y", folds=3, budget=120,
                        search_space=space).fit(store, train)
    assert [r["folds"] for r in kept.cv_results_] == [3, 3, 3]
    assert len(kept.ensemble_["members"]) == 3
    raced = HeadSelector(store, task="regression", label_col="y", folds=3, budget=120,
                         search_space=space, allow_ensemble=False).fit(store, train)
    folds = {r["name"]: r["folds"] for r in raced.cv_results_}
    assert sorted(folds.values()) == [1, 3, 3]
    weakest = min(raced.cv_results_, key=lambda r: r["mean"])
    assert folds[weakest["name"]] == 1 and weakest["status"] == "dropped after fold 1"


def _trial(name: str, oof: np.ndarray, fold_seconds: float, folds: int = 3) -> Trial:
    scores = [0.5] * folds
    return Trial(Candidate(name, {"pool": "mean", "head": "ridge"}), scores=scores,
                 seconds=fold_seconds * folds, status="all folds", oof=oof)


@pytest.mark.parametrize("left,kept,dropped", [
    (1000.0, ["a", "b", "slow"], []),  # everything fits
    (30.0, ["a", "b"], ["slow"]),  # the slow member leaves; the rest still beats each alone
    (0.5, None, ["slow"])])  # two left and still too slow: no stack
def test_a_stack_too_slow_to_refit_sheds_its_costliest_members(left, kept, dropped):
    """Under a tight budget the costliest refits leave the stack one at a time, the ridge
    refitted on the rest, before the stack is given up."""
    rng = np.random.default_rng(0)
    n = 300
    a, b = rng.normal(size=n), rng.normal(size=n)
    y = a + b
    folds = inner_folds(None, n, 3, 0)
    trials = [_trial("a", a + 0.1 * rng.normal(size=n), 1.0),
              _trial("b", b + 0.1 * rng.normal(size=n), 1.0),
              _trial("slow", a + 0.5 * rng.normal(size=n), 100.0)]
    sel = HeadSelector(None, task="regression", label_col="y")
    rec = sel._stack(trials, trials[0], y, folds, "spearman", left)
    assert rec["left_out_for_budget"] == dropped
    if kept is None:
        assert not rec["chosen"] and "would not fit the budget" in rec["why"]
        return
    assert rec["chosen"], rec.get("why")
    assert [m["name"] for m in rec["members"]] == kept
    assert rec["inner_score"] > rec["single_best_inner_score"]
    # the weights are the ridge over the members kept, not over all three
    w, _, _ = stack_regressors([t.oof for t in trials if t.candidate.name in kept], y, folds,
                               lambda t, p: float(spearmanr(t, p)[0]))
    np.testing.assert_allclose([m["weight"] for m in rec["members"]], w)
    if dropped:
        assert trials[2].status.startswith("left out of the stack")
