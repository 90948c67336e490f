"""Pair heads on STS-B (similarity, train -> test) and SICK (train+trial -> test: relatedness
SICK-R and entailment SICK-E), with the bundled all-MiniLM-L6-v2, frozen.

Featurizes each split as a pair dataset (`--pair-cols`, with `--cross`: every text once, and
every pair jointly; with `--tokens`: each text's token states too) into a temporary store (or
--store), printing the featurize cost of the texts (bi) beside the joint encoding of the pairs
(cross). Then, per task, from the same stored
vectors, prints the score and fit time of: the cosine baseline, a linear head (ridge or
logistic regression) on SentEval's [u, v, |u-v|, u*v], the learned projection scored by cosine
(CoSENT; for SICK-E, a three-class task, it is not a classifier and is left out), a linear head
on the pairs' joint encoding (cross), boosted trees on how the two texts' token states align
beside every layer's CLS and mean cosines (align), decomposable attention between the two
texts' token states (soft-align, as `--auto` tries it), and `--auto` (inner CV on the training rows
only; the test rows are scored once). Regression: Spearman and Pearson x100; classification:
accuracy and macro-F1 x100. Targets: STS-B Spearman >= 85.0 and auto never below the cosine;
SICK-R Pearson >= 88.4; SICK-E accuracy >= 86.3.

    .venv/bin/python bench/pairs.py --data ../shared/data [--store DIR] [--budget 600]
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
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score

from featstore.heads.pair_estimator import make_pair_head
from featstore.selection.auto import HeadSelector
from featstore.selection.candidates import SOFT_ALIGN
from featstore.store import Store, open_store

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SENTEVAL = ["u", "v", "absdiff", "product"]
# (task name, train dataset, test dataset, label column, task, target metric, target)
TASKS = [("STS-B", "stsb-train", "stsb-test", "score", "regression", "spearman", 85.0),
         ("SICK-R", "sick-train", "sick-test", "relatedness", "regression", "pearson", 88.4),
         ("SICK-E", "sick-train", "sick-test", "label", "classification", "accuracy", 86.3)]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def corpora(data: Path) -> dict[str, tuple[pd.DataFrame, tuple[str, str]]]:
    stsb = ("sentence1", "sentence2")
    sick = pd.read_csv(data / "sick" / "sick.csv")
    return {
        "stsb-train": (pd.read_csv(data / "stsb" / "train.csv"), stsb),
        "stsb-test": (pd.read_csv(data / "stsb" / "test.csv"), stsb),
        "sick-train": (sick[sick["split"].isin(["train", "trial"])], ("sentence_A", "sentence_B")),
        "sick-test": (sick[sick["split"] == "test"], ("sentence_A", "sentence_B")),
    }


def featurize(root: Path, data: Path, limit: int | None) -> tuple[Store, list[dict]]:
    """Every split as a pair dataset with its joint encoding; the cost of each pass."""
    from featstore.featurize.options import FeaturizeOptions
    from featstore.services.featurizing import featurize_file

    have = open_store(root).manifest.datasets if (root / "manifest.json").exists() else {}
    costs = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (table, cols) in corpora(data).items():
            if name in have:
                continue
            if limit:
                table = table.head(limit)
            path = Path(tmp) / f"{name}.csv"
            table.to_csv(path, index=False)
            s = featurize_file(path, root, FeaturizeOptions(laser=False, cross=True,
                                                                  tokens=True), name=name,
                               progress=False, pair_cols=cols)
            costs.append({"dataset": name, "pairs": s.pairs, "new_texts": s.new,
                          "texts_per_s": s.texts_per_s, "text_seconds": s.encode_seconds,
                          "new_pairs": s.cross_new, "pairs_per_s": s.pairs_per_s,
                          "pair_seconds": s.cross_seconds, "compute": s.compute_dtypes})
            log(f"featurized {name}: {s.pairs} pairs, {s.new} new texts at "
                f"{s.texts_per_s:.0f}/s, {s.cross_new} pairs jointly at {s.pairs_per_s:.0f}/s")
    return open_store(root), costs


def scores(task: str, truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    if task == "regression":
        return {"spearman": 100 * float(spearmanr(truth, pred)[0]),
                "pearson": 100 * float(pearsonr(truth, pred)[0])}
    return {"accuracy": 100 * float(np.mean(truth == pred)),
            "macro_f1": 100 * float(f1_score(truth, pred, average="macro"))}


def heads(task: str) -> dict[str, dict]:
    linear = "ridge" if task == "regression" else "logreg"
    out = {"cosine": {"pool": "mean", "head": "cosine"},
           "[u,v,|u-v|,u*v] + " + linear: {"pool": "mean", "head": linear,
                                            "combine": SENTEVAL}}
    if task == "regression":
        out["projection (CoSENT)"] = {"pool": "mean", "head": "projection", "lr": 1e-4,
                                      "symmetric": True}
    out["cross + " + linear] = {"pool": "mean-max", "source": "cross", "head": linear}
    # every layer of MiniLM (embeddings + 6)
    out["align + cos + boosting"] = {"pool": "concat", "of": "cls-mean",
                                     "layers": list(range(7)), "head": "boosting",
                                     "combine": ["align", "cosine"]}
    out["soft-align + mlp"] = dict(SOFT_ALIGN)  # as --auto tries it
    return out


def run_task(store: Store, spec: tuple, budget: float, seed: int) -> dict:
    title, train, test, label, task, _, _ = spec
    rows = store.dataset(test)
    truth = rows[label].to_numpy()
    if task == "regression":
        truth = truth.astype(float)
    out: dict[str, dict] = {}
    for name, params in heads(task).items():
        t0 = time.perf_counter()
        head = make_pair_head(task, store=store, label_col=label, seed=seed, **params)
        head.fit(train)
        secs = time.perf_counter() - t0
        out[name] = {**scores(task, truth, head.predict(test)), "seconds": secs}
        log(f"{title} {name}: {out[name]}")
    t0 = time.perf_counter()
    auto = HeadSelector(store=store, task=task, label_col=label, budget=budget, seed=seed)
    auto.fit(train)
    secs = time.perf_counter() - t0
    out["auto"] = {**scores(task, truth, auto.predict(test)), "seconds": secs,
                   "chose": auto.best_name_}
    log(f"{title} auto: {out['auto']}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--store", type=Path, help="store to (re)use (default: a temporary one)")
    ap.add_argument("--budget", type=float, default=600.0, help="seconds per --auto search")
    ap.add_argument("--tasks", nargs="+", default=[t[0] for t in TASKS])
    ap.add_argument("--limit", type=int, help="first N pairs of each split (a smoke run)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    tmp = None
    if args.store is None:
        tmp = tempfile.TemporaryDirectory(prefix="featstore-pairs-")
        args.store = Path(tmp.name) / "store"
    store, costs = featurize(args.store, args.data, args.limit)
    results: dict[str, dict] = {"featurize": costs}
    for spec in TASKS:
        if spec[0] in args.tasks:
            results[spec[0]] = run_task(store, spec, args.budget, args.seed)
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
    print("all-MiniLM-L6-v2, frozen; scores x100 on the test split, fit seconds on the training "
          "rows")
    if costs:
        texts = sum(c["new_texts"] for c in costs)
        pairs = sum(c["new_pairs"] for c in costs)
        t_s = sum(c["text_seconds"] for c in costs)
        p_s = sum(c["pair_seconds"] for c in costs)
        print(f"featurize: bi {texts} texts in {t_s:.0f} s ({texts / max(t_s, 1e-9):.0f} "
              f"texts/s); cross {pairs} pairs in {p_s:.0f} s ({pairs / max(p_s, 1e-9):.0f} "
              f"pairs/s); per pair, bi costs {2 * t_s / max(texts, 1):.4f} s at most (each "
              f"text once), cross {p_s / max(pairs, 1):.4f} s")
    for title, _, _, _, task, metric, target in TASKS:
        if title not in results:
            continue
        got = results[title]
        cols = ("spearman", "pearson") if task == "regression" else ("accuracy", "macro_f1")
        print(f"\n{title}")
        print(f"{'head':<28}{cols[0]:>10}{cols[1]:>10}{'seconds':>9}")
        for name, r in got.items():
            print(f"{name:<28}{r[cols[0]]:>10.2f}{r[cols[1]]:>10.2f}{r['seconds']:>9.1f}")
        print(f"auto chose: {got['auto']['chose']}")
        verdict = "met" if got["auto"][metric] >= target else "NOT met"
        line = f"target {metric} >= {target}: {verdict} ({got['auto'][metric]:.2f})"
        if title == "STS-B":
            base = "met" if got["auto"][metric] >= got["cosine"][metric] else "NOT met"
            line += f"; auto >= cosine: {base}"
        print(line)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
