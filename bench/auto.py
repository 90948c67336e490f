"""`fit-head --auto` figures: the head chosen by inner CV on the training rows, scored once.

Prints, for each task, the inner-CV table of the search (candidate, mean ± spread over the inner
folds, seconds, how far it got), the winner, and the winner's evaluation score next to its goal:
  full   Banking77 train -> test, budget 600 s                         goal >= 94.5
  shots  Banking77, 10 examples per label x 5 repeats (budget shared)   goal >= 87.2
         with --unlabeled, the train split's other rows join as unlabeled texts (self-training;
         the test rows never do)
  sst2   SST-2 train -> test (dev for the refit's early stopping)       goal >= 85.0

The corpora are read from ../shared/data (or --data) and featurized once into --store.

    .venv/bin/python bench/auto.py --store /tmp/b77 --data ../shared/data [--parts full,shots,sst2]
        [--sst2-store PATH] [--tokens]   # --tokens: token states stored, attention searched
        [--unlabeled] [--shots-budget SECONDS]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from banking77 import banking_csv, ensure, sst2_csv  # noqa: E402

from featstore.heads.protocols import plan_evaluation  # noqa: E402
from featstore.selection.auto import auto_protocol  # noqa: E402
from featstore.store import open_store  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
GOALS = {"full": 94.5, "shots": 87.2, "sst2": 85.0}


def log(msg: str) -> None:
    print(msg, flush=True)


def show(tag: str, run, goal: float, budget: float) -> float:
    """The first search's table, every sample's winner, the eval score against the goal."""
    first = run.searches[0]
    log(f"[{tag}] inner {first.n_folds_}-fold CV on the training rows, budget {budget:g} s"
        + (f" shared by {len(run.searches)} searches" if len(run.searches) > 1 else ""))
    for t in first.trials_:
        inner = "      -      " if not t.scores else f"{100 * t.mean:6.2f}        " \
            if len(t.scores) == 1 else f"{100 * t.mean:6.2f} ± {100 * t.std:4.2f}"
        log(f"  {t.candidate.name:48s} {inner}  {len(t.scores)} fold(s) {t.seconds:6.1f} s  "
            f"{t.status}")
    for i, s in enumerate(run.searches):
        mix = s.ensemble_
        if "inner_score" in mix:
            log(f"  ensemble{'' if len(run.searches) == 1 else f' {i + 1}'}: inner "
                f"{100 * mix['inner_score']:.2f} vs best single "
                f"{100 * mix['single_best_inner_score']:.2f} -> "
                + ("chosen" if mix["chosen"] else f"not chosen ({mix['why']})"))
        st = s.self_training_
        if "inner_score_with" in st:
            log(f"  self-training{'' if len(run.searches) == 1 else f' {i + 1}'}: inner "
                f"{100 * st['inner_score_with']:.2f} vs {100 * st['inner_score_without']:.2f} "
                "without -> " + (f"chosen ({st['pseudo_rows']} pseudo-labeled rows)"
                                 if st["chosen"] else f"not chosen ({st['why']})"))
        elif st.get("why") != "no unlabeled rows":
            log(f"  self-training: not chosen ({st['why']})")
        log(f"  winner{'' if len(run.searches) == 1 else f' {i + 1}'}: {s.best_name_} "
            f"(inner {100 * s.best_score_:.2f}; search {s.search_seconds_:.0f} s, "
            f"refit {s.refit_seconds_:.0f} s)")
    m = run.result.metrics
    acc = 100 * m["accuracy"]
    spread = f" ± {100 * m['accuracy_std']:.2f}" if len(run.result.runs) > 1 else ""
    log(f"[{tag}] winner's test accuracy {acc:.2f}{spread}, macro-F1 {100 * m['macro_f1']:.2f}"
        f" -> {'meets' if acc >= goal else 'MISSES'} goal {goal}")
    return acc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="/tmp/featstore-bench")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--parts", default="full,shots,sst2")
    ap.add_argument("--budget", type=float, default=600.0, help="seconds per task")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sst2-store", default=None, help="store for SST-2 (default: --store)")
    ap.add_argument("--unlabeled", action="store_true",
                    help="10-shot: offer the train split's rows as unlabeled texts")
    ap.add_argument("--shots-budget", type=float, default=None,
                    help="seconds shared by the five 10-shot searches (default: --budget)")
    ap.add_argument("--tokens", action="store_true",
                    help="featurize with token states, so the search also tries attention "
                         "pooling (a store already holding the dataset is used as it is)")
    args = ap.parse_args()
    parts = args.parts.split(",")
    root, data = Path(args.store), Path(args.data)
    out = {}
    if "full" in parts or "shots" in parts:
        ensure(root, "banking77", banking_csv, data, tokens=args.tokens)
        store = open_store(root)
        plan = plan_evaluation(store, "banking77")
        log(f"banking77: {len(plan.train)} train, {len(plan.eval)} test rows")
        if "full" in parts:
            t = time.perf_counter()
            run = auto_protocol(store, plan, budget=args.budget, folds=args.folds,
                                seed=args.seed)
            out["full"] = show("full", run, GOALS["full"], args.budget)
            log(f"[full] total {time.perf_counter() - t:.0f} s")
        if "shots" in parts:
            t = time.perf_counter()
            budget = args.shots_budget or args.budget
            run = auto_protocol(store, plan, shots=10, repeats=5, budget=budget,
                                folds=args.folds, seed=args.seed,
                                unlabeled="banking77" if args.unlabeled else None)
            out["shots"] = show("10-shot x5" + (" +unlabeled" if args.unlabeled else ""), run,
                                GOALS["shots"], budget)
            log(f"[10-shot x5] total {time.perf_counter() - t:.0f} s")
    if "sst2" in parts:
        sst2_root = Path(args.sst2_store) if args.sst2_store else root
        ensure(sst2_root, "sst2", sst2_csv, data, tokens=args.tokens)
        store = open_store(sst2_root)
        plan = plan_evaluation(store, "sst2")
        log(f"sst2: {len(plan.train)} train, {len(plan.eval)} test rows ({plan.protocol})")
        t = time.perf_counter()
        run = auto_protocol(store, plan, budget=args.budget, folds=args.folds, seed=args.seed)
        out["sst2"] = show("sst2", run, GOALS["sst2"], args.budget)
        log(f"[sst2] total {time.perf_counter() - t:.0f} s")
    log("summary: " + ", ".join(f"{k} {v:.2f} (goal {GOALS[k]})" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
