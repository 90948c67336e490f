"""`fit-head`, `predict`, `compare` and `probe-layers`: heads trained on stored features.

A --train/--eval file or predict input that the store lacks is featurized first, with the very
encoder (fingerprint) the head uses; that happens in `featstore.services`, not here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from featstore.cli.flags import add_flags, joined, text_value
from featstore.cli.text_output import score, table
from featstore.heads.choices import COMPARE_HEADS, COMPARE_POOLS
from featstore.heads.errors import HeadError

# -- parsers -------------------------------------------------------------------------------------
DATA_FLAGS = ("--store", "--train", "--eval", "--cv", "--label-col", "--task", "--model",
              "--seed", "--json", "--no-progress")
HEAD_FLAGS = ("--pool", "--layers", "--layer-start", "--of", "--fuse", "--fuse-mode",
              "--normalize", "--head", "--hidden", "--dropout", "--epochs", "--lr",
              "--batch-size", "--label-smoothing", "--valid-fraction", "--C", "--ensemble")
SEQUENCE_FLAGS = ("--group-by", "--order-by", "--time-col", "--labels")


def register_head_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit-head", help="train a pooling/fusion head on stored features",
                       description="Train a head from the store (no encoder pass), report "
                                   "metrics, save it under STORE/heads/NAME.")
    add_flags(p, *DATA_FLAGS, *HEAD_FLAGS, "--shots", "--repeats", "--out", *SEQUENCE_FLAGS,
              "--seq-head")
    p.set_defaults(func=cmd_fit_head)

    p = sub.add_parser("predict", help="predict with a saved head",
                       description="Predictions and class probabilities as CSV or JSONL; texts "
                                   "not in the store are encoded and stored first.")
    p.add_argument("input", metavar="INPUT", type=text_value,
                   help="a corpus file or a dataset in the store")
    add_flags(p, "--store", "--head-name", "--predictions", "--format", "--text-col",
              "--no-progress")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("compare", help="leaderboard of poolings x heads on one dataset",
                       description="Fit every pooling x head (x fusion) on one dataset; print a "
                                   "leaderboard (score, train seconds) and draw a bar chart.")
    add_flags(p, *DATA_FLAGS, "--pools", "--heads", "--fuse", "--compare-epochs", "--plot",
              "--save-best", *SEQUENCE_FLAGS, "--seq-heads", "--pool", "--layers",
              pools={"help": f"poolings to try (default: {' '.join(COMPARE_POOLS)})"},
              heads={"help": f"heads to try (default: {' '.join(COMPARE_HEADS)})"},
              fuse={"help": "also try mean + these sources (default: laser when stored)"},
              plot={"help": "bar chart PNG (default: compare-DATASET.png)"},
              pool={"help": "with --group-by: the pooling of each message's vector (default: "
                            "mean)"},
              layers={"help": "with --group-by: layers the message vectors average"})
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("probe-layers", help="logistic regression per layer on cls and mean",
                       description="What each layer knows: a logistic regression per stored "
                                   "layer on its CLS and mean vectors; a table and a line plot.")
    add_flags(p, *DATA_FLAGS, "--probe-C", "--plot",
              plot={"help": "line plot PNG (default: probe-DATASET.png)"})
    p.set_defaults(func=cmd_probe)


def check_data_flags(args: argparse.Namespace) -> None:
    if args.eval is not None and args.cv is not None:
        raise HeadError("use either --eval or --cv, not both")


def check_sequence_flags(args: argparse.Namespace) -> None:
    """Sequence flags without --group-by mean nothing."""
    if args.group_by is None:
        for flag in ("order_by", "time_col", "labels"):
            if getattr(args, flag) is not None:
                raise HeadError(f"--{flag.replace('_', '-')} applies to sequences; it needs "
                                "--group-by")
        if getattr(args, "seq_head", "auto") != "auto" or getattr(args, "seq_heads", None):
            raise HeadError("--seq-head applies to sequences; it needs --group-by")
        if args.func is cmd_compare and (args.pool != "mean" or args.layers):
            raise HeadError("compare takes --pool and --layers with --group-by; rank per-text "
                            "poolings with --pools")


def check_fit_head(args: argparse.Namespace) -> None:
    """Combinations of fit-head flags that cannot mean anything."""
    check_data_flags(args)
    check_sequence_flags(args)
    if args.repeats != 1 and args.shots is None:
        raise HeadError("--repeats repeats few-shot samples; it needs --shots")
    if args.shots is not None and args.task != "classification":
        raise HeadError("--shots samples examples per label; it needs --task classification")
    if args.task == "regression" and args.label_smoothing is not None:
        raise HeadError("--label-smoothing applies to classification only")
    if args.C is not None and args.head in ("linear", "mlp"):
        raise HeadError(f"--C sets logreg's regularisation; --head {args.head} does not use it")
    if args.layer_start is not None and args.pool not in ("weighted", "lstm"):
        raise HeadError("--layer-start applies to --pool weighted or lstm")
    if args.of is not None and args.pool not in ("concat", "weighted", "lstm"):
        raise HeadError("--of applies to --pool concat, weighted or lstm")
    if args.fuse_mode == "project" and not args.fuse:
        raise HeadError("--fuse-mode project maps fusion sources; name them with --fuse")


def _params(args: argparse.Namespace) -> dict[str, Any]:
    params = {
        "pool": args.pool, "head": args.head, "layers": joined(args.layers),
        "layer_start": args.layer_start, "of": args.of, "fuse": list(args.fuse),
        "fuse_mode": args.fuse_mode, "normalize": args.normalize, "hidden": args.hidden,
        "dropout": args.dropout, "epochs": args.epochs, "lr": args.lr,
        "batch_size": args.batch_size, "C": args.C, "valid_fraction": args.valid_fraction,
        "encoder": args.model, "ensemble": args.ensemble,
    }
    if args.label_smoothing is not None:
        params["label_smoothing"] = args.label_smoothing
    return params


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _plan(args: argparse.Namespace, tokens: bool = False) -> tuple[Any, Any]:
    from featstore.services.head_runs import plan_data

    return plan_data(args.store, args.train, args.eval, args.cv, args.label_col, args.task,
                     args.seed, args.model, tokens, progress=not args.no_progress, say=_say)


def _progress(total: int, desc: str, disable: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, disable=disable, leave=False)


def _metric_names(task: str) -> tuple[str, ...]:
    from featstore.heads.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS

    return REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS


# -- fit-head ------------------------------------------------------------------------------------
def cmd_fit_head(args: argparse.Namespace) -> int:
    from featstore.services.head_runs import fit_and_save

    if args.group_by is not None:
        from featstore.cli.sequence_commands import fit_sequence_head

        return fit_sequence_head(args)
    check_fit_head(args)
    params = _params(args)
    store, plan = _plan(args, tokens=args.pool == "attention")
    n_runs = (plan.cv or 1) * (args.repeats if args.shots else 1)
    with _progress(n_runs, "fit-head", args.no_progress) as bar:
        saved = fit_and_save(store, plan, params, task=args.task, shots=args.shots,
                             repeats=args.repeats, seed=args.seed, name=args.out, progress=bar)
    result, head = saved.result, saved.result.head
    summary = {**result.summary(), "shots": args.shots,
               "repeats": args.repeats if args.shots else None}
    out = {"head": saved.name, "path": str(saved.path), "encoder": head.encoder_id_,
           "pool": args.pool, "head_kind": head.head_kind_, "layers": head.layers_, **summary,
           "fit": head.fit_info_, "notes": result.notes}
    if args.json:
        print(json.dumps(out, indent=1, default=str))
        return 0
    print(f"dataset   {plan.train_name} ({plan.protocol}; {summary['train_rows']} train rows"
          + (f", {summary['eval_rows']} eval rows" if summary["eval_rows"] else "") + ")")
    print(f"encoder   {head.encoder_id_}  layers {head.layers_ or '-'}")
    print(f"head      pool {args.pool} · {head.head_kind_}"
          + (f" · fuse {'+'.join(args.fuse)} ({args.fuse_mode})" if args.fuse else "")
          + (f" · C {head.fit_info_['C']:g}" if "C" in head.fit_info_ else "")
          + (f" · {args.shots} shots x {args.repeats}" if args.shots else ""))
    rows = []
    for m in _metric_names(args.task):
        std = result.metrics.get(f"{m}_std", 0.0)
        spread = f"± {score(args.task, std)}" if len(result.runs) > 1 else ""
        rows.append([m, score(args.task, result.metrics[m]), spread])
    print(table(["metric", "value", ""], rows))
    print(f"train     {result.train_seconds:.1f} s over {len(result.runs)} run(s)")
    for note in result.notes:
        print(f"note      {note}")
    print(f"saved     {saved.path}")
    return 0


# -- predict -------------------------------------------------------------------------------------
def cmd_predict(args: argparse.Namespace) -> int:
    from featstore.heads.estimator import load_head
    from featstore.services.predictions import input_texts, predict_frame
    from featstore.services.sequence_runs import is_sequence_head_name
    from featstore.store import open_store

    store = open_store(args.store)
    if is_sequence_head_name(store, args.head):
        from featstore.cli.sequence_commands import predict_sequence_rows

        out = predict_sequence_rows(store, args, _say)
    else:
        head = load_head(store, args.head)
        texts = input_texts(store, args.input, args.text_col)
        out = predict_frame(store, head, texts, progress=not args.no_progress, say=_say,
                            name=f"head {args.head}")
    fmt = args.format or ("jsonl" if args.out and Path(args.out).suffix in (".jsonl", ".json")
                          else "csv")
    target = args.out or sys.stdout
    if fmt == "jsonl":
        out.to_json(target, orient="records", lines=True, force_ascii=False)
    else:
        out.to_csv(target, index=False)
    if args.out:
        print(f"wrote {len(out)} predictions to {args.out}", file=sys.stderr)
    return 0


# -- compare -------------------------------------------------------------------------------------
def cmd_compare(args: argparse.Namespace) -> int:
    from featstore.heads.charts import leaderboard_chart
    from featstore.heads.metrics import primary_metric
    from featstore.services.head_runs import compare_heads, comparison_grid, save_best

    check_data_flags(args)
    if args.group_by is not None:
        from featstore.cli.sequence_commands import compare_sequences

        return compare_sequences(args)
    check_sequence_flags(args)
    store, plan = _plan(args)
    pools = tuple(args.pools or COMPARE_POOLS)
    heads = tuple(args.heads or COMPARE_HEADS)
    base: dict[str, Any] = {"encoder": args.model}
    if args.epochs:
        base["epochs"] = args.epochs
    entries = comparison_grid(store, pools, heads, tuple(args.fuse), args.task, base)
    start = time.perf_counter()
    with _progress(len(entries), "compare", args.no_progress) as bar:
        ranked = compare_heads(store, plan, entries, args.task, args.seed, bar)
    total = time.perf_counter() - start
    metric = primary_metric(args.task)
    done = [e for e in ranked if e.result]
    plot = Path(args.plot or f"compare-{plan.train_name}.png")
    leaderboard_chart([e.name for e in done], [e.result.metrics[metric] for e in done], metric,
                      f"{plan.train_name}: {plan.protocol}", plot)
    saved = None
    if args.save_best:
        saved = str(save_best(store, plan, ranked, args.save_best, args.task, args.seed).path)
    if args.json:
        print(json.dumps({
            "dataset": plan.train_name, "protocol": plan.protocol, "overlap": plan.overlap,
            "seconds": round(total, 1), "plot": str(plot), "saved": saved,
            "leaderboard": [{"name": e.name, "params": e.params, **e.result.metrics,
                             "train_seconds": round(e.result.train_seconds, 2)} for e in done],
            "skipped": [{"name": e.name, "reason": e.skipped} for e in ranked if e.skipped],
        }, indent=1, default=str))
        return 0
    names = _metric_names(args.task)
    print(f"dataset  {plan.train_name} ({plan.protocol}; {len(plan.train)} train rows)")
    rows = [[str(i + 1), e.name, *(score(args.task, e.result.metrics[m]) for m in names),
             f"{e.result.train_seconds:.1f}"] for i, e in enumerate(done)]
    print(table(["#", "configuration", *names, "train s"], rows))
    for e in ranked:
        if e.skipped:
            print(f"skipped  {e.name}: {e.skipped}")
    if plan.overlap:
        print(f"note     {plan.overlap} evaluation text(s) also occur in the training rows")
    print(f"total    {total:.1f} s · chart {plot}" + (f" · saved {saved}" if saved else ""))
    return 0


# -- probe-layers --------------------------------------------------------------------------------
def cmd_probe(args: argparse.Namespace) -> int:
    from featstore.heads.charts import layer_chart
    from featstore.services.head_runs import probe_all_layers

    check_data_flags(args)
    if args.task != "classification":
        raise HeadError("probe-layers fits logistic regressions; it needs classification labels")
    store, plan = _plan(args)
    enc = store.resolve_encoder(args.model, kind="encoder")
    n = len(store.encoder_entry(enc).fingerprint.get("layers", [])) * 2
    with _progress(n, "probe-layers", args.no_progress) as bar:
        enc, rows = probe_all_layers(store, plan, enc, c=args.C, seed=args.seed, progress=bar)
    plot = Path(args.plot or f"probe-{plan.train_name}.png")
    layer_chart(rows, "accuracy", f"{plan.train_name}: logistic regression per layer\n"
                f"{plan.protocol}", plot)
    if args.json:
        print(json.dumps({"dataset": plan.train_name, "encoder": enc, "protocol": plan.protocol,
                          "C": args.C, "plot": str(plot), "layers": rows}, indent=1))
        return 0
    by_layer: dict[int, dict[str, dict]] = {}
    for r in rows:
        by_layer.setdefault(r["layer"], {})[r["feature"]] = r
    body = [[str(layer), score("classification", f["cls"]["accuracy"]),
             score("classification", f["mean"]["accuracy"]),
             score("classification", f["mean"]["macro_f1"])]
            for layer, f in sorted(by_layer.items())]
    print(f"dataset  {plan.train_name} ({plan.protocol}) · encoder {enc} · C {args.C:g}")
    print(table(["layer", "cls acc", "mean acc", "mean F1"], body))
    print(f"chart    {plot}")
    return 0
