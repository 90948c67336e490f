"""Sequence heads on Conversations Gone Awry (840 Wikipedia talk-page conversations, one row per
comment; will the conversation derail into a personal attack?).

Featurizes the comments (and, for one baseline, each whole conversation joined into one text,
windowed by the store) with the bundled all-MiniLM-L6-v2 into a temporary store (or --store),
then runs 10-fold cross-validation grouped by conversation (stratified by label; every
conversation whole on one side) and prints, from the same folds, the accuracy of the sequence
heads (transformer, gru, mean, auto) beside the non-sequence baselines: logistic regression on the
mean of the comment vectors, on the last comment, on mean + last, and on the whole conversation as
one windowed text. Message vectors: mean over tokens, average of layers 1-6, standardised on
the training rows of each fold. Goal: auto >= the best baseline.

    .venv/bin/python bench/sequences.py --data /work/shared/data [--folds 10] [--store DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from featstore.heads.estimator import HeadClassifier
from featstore.heads.inputs import HeadInputs, InputLayout
from featstore.heads.logreg import fit_logreg
from featstore.heads.sequence_estimator import SequenceClassifier
from featstore.heads.sequence_inputs import summarize_sequences
from featstore.heads.sequences import group_rows
from featstore.heads.splits import stratified_folds
from featstore.store import KEY_COLUMN, Store, open_store

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
LAYERS = [1, 2, 3, 4, 5, 6]
SEQ_HEADS = ("transformer", "gru", "mean", "auto")
BASELINES = ("mean of comments", "last comment", "mean + last", "whole conversation")


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


def baseline_scores(store: Store, rows: pd.DataFrame, train_groups: set, seed: int
                    ) -> dict[str, tuple[float, float]]:
    """(accuracy, seconds) of logistic regression (C by inner CV) on per-conversation summaries
    of comment vectors standardised on the training comments (reading and standardising the
    vectors, done once, is counted in the first)."""
    t0 = time.perf_counter()
    layout = InputLayout.resolve(store, "mean", None, LAYERS, None, (), None)
    is_train = rows["conversation"].isin(train_groups).to_numpy()
    inputs = HeadInputs(layout, "mean", True, True, "standard")
    inputs.fit_transform(store, rows.loc[is_train, KEY_COLUMN].tolist(), "train comments")
    matrix = inputs.matrix(store, rows[KEY_COLUMN].tolist())
    seqs = group_rows(rows, "conversation", "turn", None, "label")
    y = seqs.labels.to_numpy().astype(int)
    tr = np.array([g in train_groups for g in seqs.groups])
    out = {}
    for name, kind in zip(BASELINES[:3], ("mean", "last", "mean-last"), strict=True):
        x = summarize_sequences(kind, matrix, seqs.rows)
        model, _ = fit_logreg(x[tr], y[tr], None, 200, seed)
        out[name] = (float((model.predict(x[~tr]) == y[~tr]).mean()), time.perf_counter() - t0)
        t0 = time.perf_counter()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--store", type=Path, help="store to (re)use (default: a temporary one)")
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--heads", nargs="+", default=list(SEQ_HEADS))
    ap.add_argument("--json", type=Path, help="also write the per-fold figures here")
    args = ap.parse_args()
    tmp = None
    if args.store is None:
        tmp = tempfile.TemporaryDirectory(prefix="featstore-cga-")
        args.store = Path(tmp.name) / "store"
    store = featurize(args.store, args.data)
    rows = store.dataset("comments")
    convs = store.dataset("conversations")
    seqs = group_rows(rows, "conversation", "turn", None, "label")
    y = seqs.labels.to_numpy().astype(int)
    log(f"{len(seqs)} conversations, {len(rows)} comments, {args.folds}-fold CV grouped by "
        "conversation")
    results: dict[str, list[float]] = {n: [] for n in (*args.heads, *BASELINES)}
    seconds: dict[str, float] = dict.fromkeys(results, 0.0)
    chosen: list[str] = []
    for f, (tr, _te) in enumerate(stratified_folds(y, args.folds, args.seed)):
        train_groups = {seqs.groups[i] for i in tr}
        is_train = rows["conversation"].isin(train_groups)
        train_rows, test_rows = rows[is_train], rows[~is_train]
        for name, (acc, secs) in baseline_scores(store, rows, train_groups, args.seed).items():
            results[name].append(acc)
            seconds[name] += secs
        t0 = time.perf_counter()
        conv_train = convs["conversation"].isin(train_groups)
        whole = HeadClassifier(pool="mean", head="logreg", layers=LAYERS, seed=args.seed)
        whole.fit(store, convs[conv_train].reset_index(drop=True))
        results["whole conversation"].append(
            whole.score(store, convs[~conv_train].reset_index(drop=True)))
        seconds["whole conversation"] += time.perf_counter() - t0
        for head in args.heads:
            t0 = time.perf_counter()
            clf = SequenceClassifier(head, "conversation", "turn", store=store, layers=LAYERS,
                                     seed=args.seed).fit(store, train_rows)
            results[head].append(clf.score(store, test_rows))
            seconds[head] += time.perf_counter() - t0
            if head == "auto":
                chosen.append(clf.kind_)
        if args.json:  # after every fold, so a long run leaves what it measured
            args.json.write_text(json.dumps({"folds": results, "seconds": seconds,
                                             "auto_chose": chosen}, indent=1))
        log(f"fold {f + 1}/{args.folds}: " + ", ".join(
            f"{k} {v[-1] * 100:.1f}" for k, v in results.items()) +
            (f" (auto chose {chosen[-1]})" if chosen else ""))
    best_base = max(BASELINES, key=lambda b: np.mean(results[b]))
    print(f"Conversations Gone Awry: {len(seqs)} conversations, {args.folds}-fold CV grouped by "
          "conversation, all-MiniLM-L6-v2 mean of layers 1-6")
    print(f"{'model':<22}{'accuracy':>10}{'± std':>8}{'vs best baseline':>18}{'seconds':>9}")
    for name, accs in results.items():
        delta = (np.mean(accs) - np.mean(results[best_base])) * 100
        print(f"{name:<22}{np.mean(accs) * 100:>10.1f}{np.std(accs) * 100:>8.1f}"
              f"{delta:>+17.1f}{seconds[name]:>9.0f}")
    if chosen:
        counts = {k: chosen.count(k) for k in sorted(set(chosen))}
        print(f"auto chose: {counts}")
        verdict = "met" if np.mean(results["auto"]) >= np.mean(results[best_base]) else "NOT met"
        print(f"goal auto >= best baseline ({best_base}): {verdict}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
