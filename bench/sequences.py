"""Sequence heads on Conversations Gone Awry (840 Wikipedia talk-page conversations, one row per
comment; will the conversation derail into a personal attack?).

Featurizes the comments (and, for one baseline, each whole conversation joined into one text,
windowed by the store) with the bundled all-MiniLM-L6-v2 into a temporary store (or --store),
then runs 10-fold cross-validation grouped by conversation (stratified by label; every
conversation whole on one side) and prints, from the same folds, the accuracy of the sequence
heads with their defaults (`auto`, `transformer`, `gru`, and featstore's own summary heads
`mean`, `last`, `mean-last`, `mean-max`) beside tuned baselines written here
with scikit-learn alone, independent of featstore's heads: each comment's mean over tokens
averaged over layers 1-6, standardised on the training comments of the fold, summarised per
conversation (mean; last comment; mean + last; mean + max), into logistic regression with C
chosen by stratified 3-fold inner CV on the training conversations over the same small-C grid
`auto` uses; and the whole conversation as one windowed text the same way. Every figure is
the mean over the outer folds, with the standard deviation and the range over folds. Nothing
is chosen by a test fold's score. Goal: auto >= the best baseline.

    .venv/bin/python bench/sequences.py --data ../shared/data [--folds 10] [--store DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from featstore.heads.sequence_estimator import SequenceClassifier
from featstore.heads.sequence_search import SEQUENCE_C_GRID
from featstore.heads.sequences import group_rows
from featstore.store import KEY_COLUMN, Store, open_store

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
LAYERS = [1, 2, 3, 4, 5, 6]
SEQ_HEADS = ("auto", "transformer", "gru", "mean", "last", "mean-last", "mean-max")
SUMMARIES = {"mean of comments": ("mean",), "last comment": ("last",),
             "mean + last": ("mean", "last"), "mean + max": ("mean", "max")}
BASELINES = (*SUMMARIES, "whole conversation")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def featurize(root: Path, data: Path) -> Store:
    """comments (one row per comment) and conversations (one joined text each), once."""
    from featstore.featurize.options import FeaturizeOptions
    from featstore.services.featurizing import featurize_file

    comments = pd.read_csv(data / "cga" / "comments.csv")
    joined = (comments.sort_values(["conversation", "turn"], kind="stable")
              .groupby("conversation", sort=False)
              .agg(text=("text", lambda s: "\n".join(map(str, s))), label=("label", "first"))
              .reset_index())
    have = open_store(root).manifest.datasets if (root / "manifest.json").exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, table in (("comments", comments), ("conversations", joined)):
            if name in have:
                continue
            path = Path(tmp) / f"{name}.csv"
            table.to_csv(path, index=False)
            t0 = time.perf_counter()
            featurize_file(path, root, FeaturizeOptions(laser=False), name=name, progress=False)
            log(f"featurized {len(table)} {name} in {time.perf_counter() - t0:.0f} s")
    return open_store(root)


def layer_average(store: Store, keys: list[str]) -> np.ndarray:
    """[rows, width]: the mean over tokens, averaged over LAYERS, read straight from the store."""
    enc = store.resolve_encoder(None, kind="encoder")
    return store.gather(enc, keys, "mean", LAYERS).astype(np.float32).mean(axis=1)


def summaries(matrix: np.ndarray, rows: list[np.ndarray], parts: tuple[str, ...]) -> np.ndarray:
    out = []
    for r in rows:
        v = matrix[r]
        out.append(np.concatenate([{"mean": v.mean(0), "last": v[-1], "max": v.max(0)}[p]
                                   for p in parts]))
    return np.array(out)


def tuned_logreg(x: np.ndarray, y: np.ndarray, seed: int) -> LogisticRegression:
    """Logistic regression with C chosen by stratified 3-fold inner CV over the small-C grid."""
    search = GridSearchCV(LogisticRegression(max_iter=1000),
                          {"C": list(SEQUENCE_C_GRID)}, scoring="accuracy",
                          cv=StratifiedKFold(3, shuffle=True, random_state=seed))
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        return search.fit(x, y).best_estimator_


def baseline_scores(comments: np.ndarray, rows: list[np.ndarray], whole: np.ndarray,
                    y: np.ndarray, tr: np.ndarray, te: np.ndarray, seed: int
                    ) -> dict[str, tuple[float, float, float]]:
    """(accuracy, seconds, C) of each baseline on one outer fold."""
    out = {}
    train_rows = np.concatenate([rows[i] for i in tr])
    scaled = StandardScaler().fit(comments[train_rows]).transform(comments)
    for name, parts in SUMMARIES.items():
        t0 = time.perf_counter()
        x = summaries(scaled, rows, parts)
        model = tuned_logreg(x[tr], y[tr], seed)
        out[name] = (float((model.predict(x[te]) == y[te]).mean()),
                     time.perf_counter() - t0, float(model.C))
    t0 = time.perf_counter()
    scaler = StandardScaler().fit(whole[tr])
    model = tuned_logreg(scaler.transform(whole[tr]), y[tr], seed)
    out["whole conversation"] = (float((model.predict(scaler.transform(whole[te])) ==
                                        y[te]).mean()), time.perf_counter() - t0,
                                 float(model.C))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--store", type=Path, help="store to (re)use (default: a temporary one)")
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--heads", nargs="*", default=list(SEQ_HEADS))
    ap.add_argument("--json", type=Path, help="also write the per-fold figures here")
    args = ap.parse_args()
    tmp = None
    if args.store is None:
        tmp = tempfile.TemporaryDirectory(prefix="featstore-cga-")
        args.store = Path(tmp.name) / "store"
    store = featurize(args.store, args.data)
    rows_df = store.dataset("comments")
    convs = store.dataset("conversations")
    seqs = group_rows(rows_df, "conversation", "turn", None, "label")
    y = seqs.labels.to_numpy().astype(int)
    comments = layer_average(store, rows_df[KEY_COLUMN].astype(str).tolist())
    whole_keys = convs.set_index("conversation").loc[seqs.groups, KEY_COLUMN].astype(str)
    whole = layer_average(store, whole_keys.tolist())
    log(f"{len(seqs)} conversations, {len(rows_df)} comments, {args.folds}-fold CV grouped by "
        "conversation")
    names = (*args.heads, *BASELINES)
    results: dict[str, list[float]] = {n: [] for n in names}
    seconds: dict[str, float] = dict.fromkeys(names, 0.0)
    chosen: list[str] = []
    cs: dict[str, list[float]] = {n: [] for n in BASELINES}
    folds = StratifiedKFold(args.folds, shuffle=True, random_state=args.seed)
    for f, (tr, te) in enumerate(folds.split(np.zeros(len(y)), y)):
        for name, (acc, secs, c) in baseline_scores(comments, seqs.rows, whole, y, tr, te,
                                                    args.seed).items():
            results[name].append(acc)
            seconds[name] += secs
            cs[name].append(c)
        train_groups = {seqs.groups[i] for i in tr}
        is_train = rows_df["conversation"].isin(train_groups)
        train_rows, test_rows = rows_df[is_train], rows_df[~is_train]
        for head in args.heads:
            t0 = time.perf_counter()
            clf = SequenceClassifier(head, "conversation", "turn", store=store,
                                     seed=args.seed).fit(store, train_rows)
            results[head].append(clf.score(store, test_rows))
            seconds[head] += time.perf_counter() - t0
            if head == "auto":
                won = clf.fit_info_["chosen"]
                chosen.append(won["name"])
        if args.json:  # after every fold, so a long run leaves what it measured
            args.json.write_text(json.dumps({"folds": results, "seconds": seconds,
                                             "auto_chose": chosen, "baseline_C": cs},
                                            indent=1))
        log(f"fold {f + 1}/{args.folds}: " + ", ".join(
            f"{k} {v[-1] * 100:.1f}" for k, v in results.items()) +
            (f" (auto chose {chosen[-1]})" if chosen else ""))
    best_base = max(BASELINES, key=lambda b: np.mean(results[b]))
    print(f"Conversations Gone Awry: {len(seqs)} conversations, {args.folds}-fold CV grouped by "
          "conversation, all-MiniLM-L6-v2")
    print("heads with their defaults; baselines: scikit-learn on the mean over tokens averaged "
          "over layers 1-6,\nstandardised, logistic regression with C by 3-fold inner CV over "
          f"{', '.join(f'{c:g}' for c in SEQUENCE_C_GRID)}")
    print(f"{'model':<32}{'accuracy':>9}{'± std':>7}{'min-max over folds':>20}"
          f"{'vs best baseline':>18}{'seconds':>9}")
    for name, accs in results.items():
        if not accs:
            continue
        a = np.array(accs) * 100
        delta = np.mean(accs) * 100 - np.mean(results[best_base]) * 100
        label = f"baseline: {name}" if name in BASELINES else name
        print(f"{label:<32}{a.mean():>9.1f}{a.std():>7.1f}{f'{a.min():.1f}-{a.max():.1f}':>20}"
              f"{delta:>+18.1f}{seconds[name]:>9.0f}")
    for name in BASELINES:
        counts = pd.Series(cs[name]).value_counts().sort_index()
        log(f"C chosen for {name}: " + ", ".join(f"{c:g} x{n}" for c, n in counts.items()))
    if chosen:
        counts = pd.Series(chosen).value_counts()
        print("auto chose: " + "; ".join(f"{k} ({v}x)" for k, v in counts.items()))
        verdict = "met" if np.mean(results["auto"]) >= np.mean(results[best_base]) else "NOT met"
        print(f"goal auto >= best baseline ({best_base}): {verdict}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
