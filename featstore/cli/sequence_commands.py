"""`fit-head --group-by`, `compare --group-by` and `predict` with a sequence head: rows grouped
into sequences (a conversation's messages, a user's events), one label per group."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import pandas as pd

from featstore.cli.flags import FLAGS, joined
from featstore.cli.text_output import metrics_table, score, table
from featstore.heads.choices import COMPARE_SEQ_HEADS
from featstore.heads.errors import HeadError

# per-text flags whose defaults are not a sequence head's: passed on only when given otherwise
_TUNED = {"epochs": "--epochs", "lr": "--lr", "batch_size": "--batch-size",
          "dropout": "--dropout", "valid_fraction": "--valid-fraction"}


def _tell(message: str) -> None:
    print(message, file=sys.stderr)


def _given(args: argparse.Namespace, dest: str, flag: str) -> bool:
    return getattr(args, dest, None) != FLAGS[flag].default


def check_sequence_head_flags(args: argparse.Namespace) -> None:
    """Per-text flags that a sequence head has no use for, refused in one line."""
    if args.task != "classification":
        raise HeadError("sequence heads classify; --task regression is not supported with "
                        "--group-by")
    refused = [("--shots", args.shots is not None), ("--repeats", args.repeats != 1),
               ("--head", args.head is not None), ("--ensemble", args.ensemble != 1),
               ("--layer-start", args.layer_start is not None),
               ("--fuse-mode", args.fuse_mode != "concat"),
               ("--label-smoothing", args.label_smoothing is not None),
               ("--hidden", _given(args, "hidden", "--hidden"))]
    for flag, present in refused:
        if present:
            raise HeadError(f"{flag} applies to per-text heads; with --group-by choose the "
                            "model with --seq-head")


def sequence_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {"pool": args.pool, "layers": joined(args.layers),
                              "of": getattr(args, "of", None), "fuse": tuple(args.fuse),
                              "normalize": getattr(args, "normalize", "standard"),
                              "encoder": args.model, "label_col": args.label_col}
    if getattr(args, "seq_head", None) is not None:
        params["seq_head"] = args.seq_head
    if getattr(args, "C", None) is not None:
        params["C"] = args.C
    for dest, flag in _TUNED.items():
        if getattr(args, dest, None) is not None and _given(args, dest, flag):
            params[dest] = getattr(args, dest)
    return params


def _sequence_plan(args: argparse.Namespace) -> tuple[Any, Any]:
    from featstore.services.sequence_runs import plan_sequences

    store, plan = plan_sequences(args.store, args.train, args.group_by, args.order_by,
                                 args.time_col, args.eval, args.cv, args.label_col, args.labels,
                                 args.seed, args.model, progress=not args.no_progress, say=_tell)
    store.resolve_encoder(args.model, kind="encoder")  # its one-line error before any bar
    return store, plan


def _bar(total: int, desc: str, disable: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, disable=disable, leave=False)


def fit_sequence_head(args: argparse.Namespace) -> int:
    from featstore.heads.artifacts import refuse_existing_head
    from featstore.services.sequence_runs import default_sequence_head_name, fit_sequences_and_save

    check_sequence_head_flags(args)
    if args.auto or args.report:
        raise HeadError("--auto and --report apply to per-text heads; with --group-by choose "
                        "the sequence model with --seq-head (auto picks by inner CV)")
    params = sequence_params(args)
    store, plan = _sequence_plan(args)
    name = args.out or default_sequence_head_name(plan, params)
    refuse_existing_head(store, name, args.overwrite)  # before any work or progress bar
    with _bar(plan.cv or 1, "fit-head", args.no_progress) as bar:
        saved = fit_sequences_and_save(store, plan, params, args.seed, name, bar,
                                       overwrite=args.overwrite)
    result, head = saved.result, saved.result.head
    summary = result.summary()
    if args.json:
        print(json.dumps({"head": saved.name, "path": str(saved.path), "pool": args.pool,
                          "group_by": args.group_by, **summary, "fit": head.fit_info_,
                          "notes": result.notes}, indent=1, default=str))
        return 0
    print(f"dataset   {plan.dataset} ({plan.protocol}; {len(plan.seqs)} sequences of "
          f"{len(plan.rows)} rows, grouped by {args.group_by})")
    print(f"head      sequence {head.kind_}" + (" (auto)" if args.seq_head == "auto" else "")
          + f" · pool {args.pool}" + (f" · times {args.time_col}" if args.time_col else ""))
    inner = head.fit_info_.get("inner_cv")
    if inner:
        print("inner CV  " + ", ".join(f"{k} {v * 100:.1f}" for k, v in inner.items()))
    print(metrics_table("classification", result.metrics, ("accuracy", "macro_f1"),
                        len(result.runs)))
    print(f"train     {result.train_seconds:.1f} s over {len(result.runs)} run(s)")
    for note in result.notes:
        print(f"note      {note}")
    print(f"saved     {saved.path}")
    return 0


def compare_sequences(args: argparse.Namespace) -> int:
    from featstore.heads.artifacts import refuse_existing_head
    from featstore.heads.charts import chart_path, check_chart_dir, leaderboard_chart
    from featstore.services.sequence_runs import (
        compare_sequence_heads,
        fit_sequences_and_save,
    )

    if args.task != "classification":
        raise HeadError("sequence heads classify; --task regression is not supported with "
                        "--group-by")
    if args.pools or args.heads:
        raise HeadError("--pools and --heads rank per-text heads; with --group-by name "
                        "sequence heads with --seq-heads")
    params = sequence_params(args)
    if args.epochs:
        params["epochs"] = args.epochs
    heads = tuple(args.seq_heads or COMPARE_SEQ_HEADS)
    if args.save_best and (args.budget, args.folds) != (FLAGS["--budget"].default,
                                                         FLAGS["--folds"].default):
        raise HeadError("--budget and --folds set the per-text search; with --group-by "
                        "--save-best chooses by 3-fold inner CV on the training sequences")
    check_chart_dir(args.plot, args.charts)
    store, plan = _sequence_plan(args)
    plot = chart_path(args.plot, args.charts, f"compare-{plan.dataset}.png", args.overwrite)
    if args.save_best:
        refuse_existing_head(store, args.save_best, args.overwrite)
    start = time.perf_counter()
    with _bar(len(heads), "compare", args.no_progress) as bar:
        ranked = compare_sequence_heads(store, plan, heads, params, args.seed, bar)
    total = time.perf_counter() - start
    leaderboard_chart([e.name for e in ranked],
                      [e.result.metrics["accuracy"] for e in ranked], "accuracy",
                      f"{plan.dataset} · sequences by {args.group_by}\n{plan.protocol}", plot)
    saved = None
    if args.save_best:
        # chosen by inner CV on the training sequences among the compared heads, never by the
        # leaderboard's evaluation scores
        best = {**params, "seq_head": "auto", "candidates": tuple(heads)}
        saved = str(fit_sequences_and_save(store, plan, best, args.seed, args.save_best,
                                           overwrite=args.overwrite).path)
    if args.json:
        print(json.dumps({"dataset": plan.dataset, "protocol": plan.protocol,
                          "seconds": round(total, 1), "plot": str(plot), "saved": saved,
                          "leaderboard": [{"name": e.name, "params": e.params,
                                           **e.result.metrics,
                                           "train_seconds": round(e.result.train_seconds, 2)}
                                          for e in ranked]}, indent=1, default=str))
        return 0
    print(f"dataset  {plan.dataset} ({plan.protocol}; {len(plan.seqs)} sequences)")
    body = [[str(i + 1), e.name, score("classification", e.result.metrics["accuracy"]),
             score("classification", e.result.metrics["macro_f1"]),
             f"{e.result.train_seconds:.1f}"] for i, e in enumerate(ranked)]
    print(table(["#", "sequence head", "accuracy", "macro_f1", "train s"], body))
    print(f"total    {total:.1f} s · chart {plot}" + (f" · saved {saved}" if saved else ""))
    return 0


def predict_sequence_rows(store: Any, args: argparse.Namespace, say: Any
                          ) -> tuple[pd.DataFrame, int]:
    from featstore.heads.sequence_estimator import SequenceClassifier
    from featstore.services.sequence_runs import predict_sequences

    if args.input is None or args.input == "-" or args.text or args.top_k:
        raise HeadError(f"head {args.head} is a sequence head: name a dataset or a file of rows "
                        "with its group column (--text, stdin and --top-k are for per-text "
                        "heads)")
    head = SequenceClassifier.load(store, args.head)
    return predict_sequences(store, head, args.input, progress=not args.no_progress, say=say,
                             name=f"head {args.head}")
