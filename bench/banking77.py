"""Banking77 (and SST-2) quality figures for heads trained on stored features.

Prints every figure the heads are judged by:
  1. MTEB protocol check: 8 examples per label, 10 runs, logistic regression (max_iter 100) on
     the L2-normalised last-layer mean of the default encoder; MTEB publishes 80.04.
  2. Full train set: `compare`'s leaderboard; the best head must reach 94.0 test accuracy,
     trained in at most 120 s.
  3. 10 examples per label, 5 repeats: mean and standard deviation (target 86).
  4. SST-2 test accuracy for the best head configuration (and a middle-to-top layer average).
  5. `--auto`: the head chosen by inner CV on the training rows (budget 600 s), scored once on
     test (goal 94.5; bench/auto.py adds 10-shot and SST-2).

The corpora are read from ../shared/data (or --data) and featurized once into --store; a store
that already holds them is reused, so re-runs only train heads.

    .venv/bin/python bench/banking77.py --store /tmp/b77 [--parts mteb,full,compare,shots,sst2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from featstore.heads import protocols
from featstore.selection import compare as compare_mod
from featstore.selection.auto import auto_protocol
from featstore.selection.recipes import STRONG
from featstore.store import open_store

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MTEB_PUBLISHED = 80.04
PARTS = ("load", "mteb", "full", "compare", "shots", "sst2", "auto")


def log(msg: str) -> None:
    print(msg, flush=True)


def banking_csv(data: Path, out: Path) -> Path:
    tr = pd.read_csv(data / "banking77" / "train.csv").assign(split="train")
    te = pd.read_csv(data / "banking77" / "test.csv").assign(split="test")
    pd.concat([tr, te]).rename(columns={"category": "label"}).to_csv(out, index=False)
    return out


def sst2_csv(data: Path, out: Path) -> Path:
    rows = []
    for split in ("train", "dev", "test"):
        for line in (data / "sst2" / f"{split}.txt").read_text(encoding="utf-8").splitlines():
            label, sentence = line.split(" ", 1)
            rows.append((sentence, int(label), split))
    pd.DataFrame(rows, columns=["text", "label", "split"]).to_csv(out, index=False)
    return out


def ensure(store_path: Path, name: str, make_csv, data: Path, tokens: bool = False) -> None:
    """Featurize the corpus into the store once (with token states if `tokens`)."""
    if (store_path / "manifest.json").exists() and name in open_store(store_path).manifest.datasets:
        return
    from featstore.featurize.driver import featurize_corpus
    from featstore.featurize.options import FeaturizeOptions

    csv = make_csv(data, Path(f"/tmp/featstore-bench-{name}.csv"))
    t = time.perf_counter()
    s = featurize_corpus(csv, store_path, FeaturizeOptions(laser=False, tokens=tokens),
                         name=name).to_dict()
    log(f"featurized {name}: {s['texts']} texts in {time.perf_counter() - t:.0f} s")


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="/tmp/featstore-bench")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--parts", default=",".join(PARTS))
    ap.add_argument("--name", default="banking77", help="Banking77's dataset name in --store")
    ap.add_argument("--sst2-store", default=None, help="store for SST-2 (default: --store)")
    ap.add_argument("--sst2-name", default="sst2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=float, default=600.0, help="--auto search seconds")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    root, data = Path(args.store), Path(args.data)
    ensure(root, args.name, banking_csv, data)
    store = open_store(root)
    plan = protocols.plan_evaluation(store, args.name)
    log(f"banking77: {len(plan.train)} train rows, {len(plan.eval)} test rows, "
        f"{plan.overlap} test texts also in train")
    results: dict = {}

    if "load" in parts:
        store2 = open_store(root)
        enc = store2.resolve_encoder(kind="encoder")
        keys = store2.dataset(args.name)["_key"].tolist()
        t = time.perf_counter()
        x = store2.gather(enc, keys, "mean", -1).astype(np.float32)
        results["load_seconds"] = time.perf_counter() - t
        log(f"[load] last-layer mean of {len(keys)} texts {x.shape}: "
            f"{results['load_seconds']:.2f} s (target < 1 s)")

    if "mteb" in parts:
        t = time.perf_counter()
        mteb = {"pool": "mean", "head": "logreg", "normalize": "l2", "C": 1.0, "max_iter": 100}
        r = protocols.run_protocol(store, plan, mteb, shots=8, repeats=10, seed=args.seed)
        acc = 100 * r.metrics["accuracy"]
        results["mteb"] = acc
        log(f"[1 mteb] 8 per label x 10 runs, logreg on L2-normalised mean: {acc:.2f} "
            f"± {100 * r.metrics['accuracy_std']:.2f} (published {MTEB_PUBLISHED}; "
            f"diff {acc - MTEB_PUBLISHED:+.2f}; target within 1.0) "
            f"[{time.perf_counter() - t:.0f} s]")

    if "full" in parts:
        for params in ({"pool": "mean", "head": "logreg"}, {"pool": "mean-max", "head": "mlp"},
                       STRONG):
            r = protocols.run_protocol(store, plan, params, seed=args.seed)
            log(f"[2 full] {params}: accuracy {pct(r.metrics['accuracy'])}, macro-F1 "
                f"{pct(r.metrics['macro_f1'])}, train {r.train_seconds:.1f} s")

    best = dict(STRONG)
    if "compare" in parts:
        entries = compare_mod.compare_grid()
        t = time.perf_counter()
        ranked = compare_mod.run_grid(store, plan, entries, seed=args.seed)
        total = time.perf_counter() - t
        log(f"[2 compare] {len(entries)} configurations in {total:.0f} s (target < 600 s)")
        for i, e in enumerate(ranked):
            if e.result:
                log(f"  {i + 1:2d}. {e.name:45s} {pct(e.result.metrics['accuracy'])}  "
                    f"F1 {pct(e.result.metrics['macro_f1'])}  {e.result.train_seconds:6.1f} s")
            else:
                log(f"   -. {e.name:45s} skipped: {e.skipped}")
        top = ranked[0]
        best = top.params
        ok = top.result.metrics["accuracy"] >= 0.94 and top.result.train_seconds <= 120
        log(f"[2 best] {top.name}: {pct(top.result.metrics['accuracy'])} in "
            f"{top.result.train_seconds:.1f} s -> {'meets' if ok else 'MISSES'} 94.0 / 120 s")
        results["best"] = {"name": top.name, "accuracy": top.result.metrics["accuracy"],
                           "seconds": top.result.train_seconds}

    if "shots" in parts:
        # with 770 rows, small batches and more epochs give the MLP enough updates, and heavy
        # dropout keeps it from memorising ten examples per label (+0.4 to +0.5 over 0.3)
        few = {**STRONG, "batch_size": 64, "epochs": 60, "lr": 1e-3, "dropout": 0.8}
        for params in ({"pool": "mean", "head": "logreg"}, {"pool": "mean-max", "head": "logreg"},
                       STRONG, few):
            r = protocols.run_protocol(store, plan, params, shots=10, repeats=5, seed=args.seed)
            log(f"[3 10-shot] {params}: {pct(r.metrics['accuracy'])} ± "
                f"{pct(r.metrics['accuracy_std'])} (target 86; paper USE+ConveRT 85.19) "
                f"[{r.train_seconds:.0f} s for 5 runs]")

    if "sst2" in parts:
        sroot = Path(args.sst2_store or root)
        ensure(sroot, args.sst2_name, sst2_csv, data)
        store = open_store(sroot)
        p2 = protocols.plan_evaluation(store, args.sst2_name)
        log(f"sst2: {len(p2.train)} train, {len(p2.valid) if p2.valid is not None else 0} dev, "
            f"{len(p2.eval)} test ({p2.protocol})")
        for params in ({"pool": "mean", "head": "logreg"}, {**best}):
            r = protocols.run_protocol(store, p2, params, seed=args.seed)
            log(f"[4 sst2] {params}: test accuracy {pct(r.metrics['accuracy'])} "
                f"[{r.train_seconds:.0f} s]")
        t = time.perf_counter()
        ranked = compare_mod.run_grid(store, p2, compare_mod.compare_grid(), seed=args.seed)
        log(f"[4 sst2 compare] {time.perf_counter() - t:.0f} s")
        for i, e in enumerate(ranked):
            if e.result:
                log(f"  {i + 1:2d}. {e.name:45s} {pct(e.result.metrics['accuracy'])}  "
                    f"{e.result.train_seconds:6.1f} s")
        results["sst2_best"] = {"name": ranked[0].name,
                                "accuracy": ranked[0].result.metrics["accuracy"]}
    if "auto" in parts:
        store = open_store(root)
        t = time.perf_counter()
        run = auto_protocol(store, plan, budget=args.budget, seed=args.seed)
        s = run.searches[0]
        acc = 100 * run.result.metrics["accuracy"]
        results["auto"] = {"winner": s.best_name_, "inner": s.best_score_, "accuracy": acc}
        log(f"[5 auto] winner {s.best_name_} (inner 3-fold CV {100 * s.best_score_:.2f}, "
            f"{sum(len(x.scores) for x in s.trials_)} fold fits of {len(s.trials_)} candidates): "
            f"test accuracy {acc:.2f} -> {'meets' if acc >= 94.5 else 'MISSES'} 94.5 "
            f"[{time.perf_counter() - t:.0f} s, budget {args.budget:g} s]")
    json.dump(results, sys.stderr)
    print(file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
