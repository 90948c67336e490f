"""`fit-head`, `predict`, `compare` and `probe-layers`: heads trained on stored features.

A --train/--eval file or predict input that the store lacks is featurized first, with the very
encoder (fingerprint) the head uses; that happens in `featstore.services`, not here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from featstore.cli.flags import FLAGS, add_flags, joined, text_value
from featstore.cli.text_output import metrics_table, score, table
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
    add_flags(p, *DATA_FLAGS, *HEAD_FLAGS, "--shots", "--repeats", "--out", "--overwrite",
              "--report", *SEQUENCE_FLAGS, "--seq-head")
    add_flags(p, "--auto", "--budget", "--folds", "--unlabeled")
    p.set_defaults(func=cmd_fit_head)

    p = sub.add_parser("predict", help="predict with a saved head",
                       description="Predictions and class probabilities as CSV, JSONL or JSON; "
                                   "texts not in the store are encoded and stored first. The "
                                   "input's other columns (gold labels too) are kept.")
    p.add_argument("input", metavar="INPUT", type=text_value, nargs="?",
                   help="a dataset in the store, a corpus file, or - for one text per line on "
                        "stdin")
    add_flags(p, "--store", "--head-name", "--text", "--top-k", "--predictions", "--format",
              "--overwrite", "--text-col", "--json", "--no-progress",
              overwrite={"help": "replace an existing --out file"})
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("heads", help="list or remove saved heads",
                       description="The heads saved in the store: list them, or remove one.")
    heads_sub = p.add_subparsers(dest="heads_command", metavar="ACTION", required=True)
    q = heads_sub.add_parser("list", help="every saved head with its task, pooling and score")
    add_flags(q, "--store", "--json")
    q.set_defaults(func=cmd_heads_list)
    q = heads_sub.add_parser("rm", help="remove a saved head")
    q.add_argument("name", metavar="NAME", type=text_value, help="the head to remove")
    add_flags(q, "--store")
    q.set_defaults(func=cmd_heads_rm)

    p = sub.add_parser("compare", help="leaderboard of poolings x heads on one dataset",
                       description="Fit every pooling x head (x fusion) on one dataset; print a "
                                   "leaderboard (score, train seconds) and draw a bar chart.")
    add_flags(p, *DATA_FLAGS, "--pools", "--heads", "--fuse", "--compare-epochs", "--plot",
              "--charts", "--save-best", "--overwrite", *SEQUENCE_FLAGS, "--seq-heads", "--pool",
              "--layers",
              pools={"help": f"poolings to try (default: {' '.join(COMPARE_POOLS)})"},
              heads={"help": f"heads to try (default: {' '.join(COMPARE_HEADS)})"},
              fuse={"help": "also try mean + these sources (default: laser when stored)"},
              plot={"help": "bar chart PNG (default: CHARTS/compare-DATASET.png)"},
              pool={"help": "with --group-by: the pooling of each message's vector (default: "
                            "mean)"},
              layers={"help": "with --group-by: layers the message vectors average"})
    add_flags(p, "--budget", "--folds",
              budget={"help": "seconds --save-best's inner-CV choice may spend (default: "
                              "%(default)s)"})
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("probe-layers", help="logistic regression per layer on cls and mean",
                       description="What each layer knows: a logistic regression per stored "
                                   "layer on its CLS and mean vectors; a table and a line plot.")
    add_flags(p, *DATA_FLAGS, "--probe-C", "--plot", "--charts", "--overwrite",
              plot={"help": "line plot PNG (default: CHARTS/probe-DATASET.png)"})
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
    if args.report and args.task != "classification":
        raise HeadError("--report breaks scores down by class; it needs --task classification")
    check_auto(args)


# flags that fix what --auto searches; the defaults of those with one
_SEARCHED = {"pool": "mean", "head": None, "layers": None, "layer_start": None, "of": None,
             "C": None, "ensemble": 1, "fuse_mode": "concat", "label_smoothing": None}


def check_auto(args: argparse.Namespace) -> None:
    """--auto chooses pooling and head itself; --budget, --folds and --unlabeled belong to
    it."""
    if not args.auto:
        for flag in ("budget", "folds", "unlabeled"):
            if getattr(args, flag) != FLAGS[f"--{flag}"].default:
                raise HeadError(f"--{flag} sets the --auto search; add --auto")
        return
    if args.unlabeled is not None and args.task != "classification":
        raise HeadError("--unlabeled serves self-training, which needs --task classification")
    for dest, default in _SEARCHED.items():
        if getattr(args, dest) != default:
            flag = "--" + dest.replace("_", "-")
            raise HeadError(f"--auto chooses the pooling and head by inner CV; drop {flag} "
                            "(or drop --auto)")


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

    store, plan = plan_data(args.store, args.train, args.eval, args.cv, args.label_col,
                            args.task, args.seed, args.model, tokens,
                            progress=not args.no_progress, say=_say)
    store.resolve_encoder(args.model, kind="encoder")  # its one-line error before any bar
    return store, plan


def _progress(total: int, desc: str, disable: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, disable=disable, leave=False)


def _metric_names(task: str) -> tuple[str, ...]:
    from featstore.heads.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS

    return REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS


# -- fit-head ------------------------------------------------------------------------------------
def cmd_fit_head(args: argparse.Namespace) -> int:
    from featstore.heads.artifacts import refuse_existing_head
    from featstore.services.head_runs import default_head_name, fit_and_save

    if args.group_by is not None:
        from featstore.cli.sequence_commands import fit_sequence_head

        return fit_sequence_head(args)
    check_fit_head(args)
    if args.auto:
        return _fit_auto(args)
    params = _params(args)
    if args.report:
        from featstore.services.head_runs import report_paths

        report_paths(args.report, args.overwrite)  # refused now, not after training
    store, plan = _plan(args, tokens=args.pool == "attention")
    name = args.out or default_head_name(plan, params, args.task)
    refuse_existing_head(store, name, args.overwrite)  # before any work or progress bar
    n_runs = (plan.cv or 1) * (args.repeats if args.shots else 1)
    with _progress(n_runs, "fit-head", args.no_progress) as bar:
        saved = fit_and_save(store, plan, params, task=args.task, shots=args.shots,
                             repeats=args.repeats, seed=args.seed, name=name, progress=bar,
                             overwrite=args.overwrite, keep_predictions=bool(args.report))
    result, head = saved.result, saved.result.head
    summary = {**result.summary(), "shots": args.shots,
               "repeats": args.repeats if args.shots else None}
    out = {"head": saved.name, "path": str(saved.path), "encoder": head.encoder_id_,
           "pool": args.pool, "head_kind": head.head_kind_, "layers": head.layers_, **summary,
           "fit": head.fit_info_, "notes": result.notes}
    report, report_files = _write_report(store, saved, args)
    if report_files:
        out["report"] = report_files
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
    print(metrics_table(args.task, result.metrics, _metric_names(args.task), len(result.runs)))
    print(f"train     {result.train_seconds:.1f} s over {len(result.runs)} run(s)")
    for note in result.notes:
        print(f"note      {note}")
    _print_report(report, args)
    print(f"saved     {saved.path}")
    return 0


def _write_report(store: Any, saved: Any, args: argparse.Namespace
                  ) -> tuple[Any, dict[str, str] | None]:
    """`--report DIR`: the evaluation rows' per-class scores, confusion matrix and errors."""
    if not args.report:
        return None, None
    from featstore.services.head_runs import write_report

    report, paths = write_report(store, saved, args.report, args.overwrite)
    return report, {k: str(v) for k, v in paths.items()}


def _print_report(report: Any, args: argparse.Namespace) -> None:
    if report is None:
        return
    worst = report.per_class.head(5)
    print(f"report    {report.rows} evaluated rows, {len(report.errors)} misclassified; "
          "lowest F1: " + ", ".join(f"{r.label} {100 * r.f1:.1f}" for r in worst.itertuples()))
    print(f"          {args.report}/classes.csv · confusion.png · errors.csv")


def _fit_auto(args: argparse.Namespace) -> int:
    from featstore.heads.artifacts import refuse_existing_head
    from featstore.services.head_runs import search_and_save

    if args.report:
        from featstore.services.head_runs import report_paths

        report_paths(args.report, args.overwrite)  # refused now, not after the search
    store, plan = _plan(args)
    name = args.out or f"{plan.train_name}-auto"
    refuse_existing_head(store, name, args.overwrite)  # before the search, not after
    unlabeled = None
    if args.unlabeled is not None:
        from featstore.services.datasets import dataset_for

        unlabeled = dataset_for(args.store, args.unlabeled, args.model,
                                progress=not args.no_progress, say=_say)
        store.refresh()  # the handle must see the dataset just featurized
    with _progress(0, "fit-head --auto", args.no_progress) as bar:
        saved = search_and_save(store, plan, task=args.task, shots=args.shots,
                                repeats=args.repeats, seed=args.seed, name=name,
                                budget=args.budget, folds=args.folds, encoder=args.model,
                                fuse=tuple(args.fuse) or None, unlabeled=unlabeled,
                                progress=bar, overwrite=args.overwrite,
                                keep_predictions=bool(args.report))
    result, head = saved.result, saved.result.head
    searches = saved.searches or []
    report, report_files = _write_report(store, saved, args)
    summary = {**result.summary(), "shots": args.shots,
               "repeats": args.repeats if args.shots else None}
    if args.json:
        print(json.dumps({"head": saved.name, "path": str(saved.path),
                          "encoder": head.encoder_id_, "winner": searches[0].best_params_,
                          **summary, "fit": head.fit_info_, "notes": result.notes,
                          **({"report": report_files} if report_files else {}),
                          "searches": [s.record() for s in searches]}, indent=1, default=str))
        return 0
    first = searches[0]
    print(f"dataset   {plan.train_name} ({plan.protocol}; {summary['train_rows']} train rows"
          + (f", {summary['eval_rows']} eval rows" if summary["eval_rows"] else "") + ")")
    print(f"search    {len(first.trials_)} candidates · {first.n_folds_}-fold inner CV on the "
          f"training rows · {first.metric_} · budget {args.budget:g} s"
          + (f" shared by {len(searches)} searches" if len(searches) > 1 else ""))
    rows = [[t.candidate.name,
             "-" if not t.scores else score(args.task, t.mean) if len(t.scores) == 1 else
             f"{score(args.task, t.mean)} ± {score(args.task, t.std)}",
             str(len(t.scores)), f"{t.seconds:.1f}", t.status]
            for t in first.trials_]
    print(table(["candidate", f"inner {first.metric_}", "folds", "s", "status"], rows))
    mix = first.ensemble_
    if "inner_score" in mix:
        print(f"ensemble  inner {score(args.task, mix['inner_score'])} vs best single "
              f"{score(args.task, mix['single_best_inner_score'])}: "
              + ("chosen" if mix["chosen"] else f"not chosen, {mix['why']}"))
    st = first.self_training_
    if "inner_score_with" in st:
        print(f"self-train inner {score(args.task, st['inner_score_with'])} with pseudo-labels "
              f"vs {score(args.task, st['inner_score_without'])} without ("
              f"{st['unlabeled_rows']} unlabeled rows): "
              + (f"chosen, {st['pseudo_rows']} pseudo-labeled rows joined the refit"
                 if st["chosen"] else f"not chosen, {st['why']}"))
    elif args.unlabeled is not None:
        print(f"self-train not chosen, {st['why']}")
    for i, s in enumerate(searches):
        print(f"winner    {s.best_name_} (inner {score(args.task, s.best_score_)}; search "
              f"{s.search_seconds_:.0f} s, refit {s.refit_seconds_:.0f} s)"
              + (f" [sample {i + 1}]" if len(searches) > 1 else ""))
    print(metrics_table(args.task, result.metrics, _metric_names(args.task), len(result.runs),
                        header="winner's eval metric"))
    for note in result.notes:
        print(f"note      {note}")
    _print_report(report, args)
    print(f"saved     {saved.path}")
    return 0


# -- predict -------------------------------------------------------------------------------------
def cmd_predict(args: argparse.Namespace) -> int:
    from featstore.heads.ensemble import load_head
    from featstore.services.predictions import (
        input_rows,
        output_target,
        predict_frame,
        stdin_texts,
        write_predictions,
    )
    from featstore.services.sequence_runs import is_sequence_head_name
    from featstore.store import open_store

    if args.json and (args.out or args.format):
        raise HeadError("--json prints to stdout; it does not combine with --out or --format")
    if args.overwrite and not args.out:
        raise HeadError("--overwrite replaces an --out file; it needs --out")
    target, fmt = output_target(args.out, args.format, args.overwrite)  # before any work
    store = open_store(args.store)
    skipped = 0
    if is_sequence_head_name(store, args.head):
        from featstore.cli.sequence_commands import predict_sequence_rows

        out, skipped = predict_sequence_rows(store, args, _say)
    else:
        head = load_head(store, args.head)
        texts = list(args.text or [])
        source = args.input
        if source == "-":
            texts += stdin_texts(sys.stdin)
            source = None
        given = input_rows(store, source, args.text_col, texts)
        skipped = given.skipped
        if skipped:
            _say(f"skipped {skipped} input row(s) without text")
        out = predict_frame(store, head, given.rows, progress=not args.no_progress, say=_say,
                            name=f"head {args.head}", top_k=args.top_k)
    if args.json:
        print(json.dumps({"head": args.head, "rows": len(out), "skipped": skipped,
                          "predictions": out.to_dict(orient="records")},
                         indent=1, default=str, ensure_ascii=False))
        return 0
    write_predictions(out, target, fmt, sys.stdout)
    if target is not None:
        print(f"wrote {len(out)} predictions to {args.out}", file=sys.stderr)
    return 0


def cmd_heads_list(args: argparse.Namespace) -> int:
    from featstore.services.head_runs import describe_heads

    rows = describe_heads(args.store)
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return 0
    if not rows:
        print("no heads saved")
        return 0
    body = [[r["name"], r["task"], r["pool"], r["head"], r["dataset"] or "-",
             r["metric"], "-" if r["score"] is None else score(r["task"], r["score"]),
             r["created"]] for r in rows]
    print(table(["name", "task", "pool", "head", "dataset", "metric", "score", "created"], body))
    return 0


def cmd_heads_rm(args: argparse.Namespace) -> int:
    from featstore.heads.artifacts import remove_head
    from featstore.store import default_store_path

    remove_head(default_store_path(args.store), args.name)
    print(f"removed head {args.name}")
    return 0


# -- compare -------------------------------------------------------------------------------------
def cmd_compare(args: argparse.Namespace) -> int:
    from featstore.heads.charts import chart_path, check_chart_dir, leaderboard_chart
    from featstore.heads.metrics import primary_metric
    from featstore.services.head_runs import compare_heads, comparison_grid, save_best

    check_data_flags(args)
    if args.group_by is not None:
        from featstore.cli.sequence_commands import compare_sequences

        return compare_sequences(args)
    check_sequence_flags(args)
    if not args.save_best and (args.budget, args.folds) != (FLAGS["--budget"].default,
                                                             FLAGS["--folds"].default):
        raise HeadError("--budget and --folds set how --save-best chooses; add --save-best")
    check_chart_dir(args.plot, args.charts)
    store, plan = _plan(args)
    plot = chart_path(args.plot, args.charts, f"compare-{plan.train_name}.png", args.overwrite)
    if args.save_best:
        from featstore.heads.artifacts import refuse_existing_head

        refuse_existing_head(store, args.save_best, args.overwrite)
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
    encoder = store.resolve_encoder(args.model, kind="encoder")
    leaderboard_chart([e.name for e in done], [e.result.metrics[metric] for e in done], metric,
                      _chart_title(plan, encoder, "compare"), plot)
    saved = None
    if args.save_best:
        saved = str(save_best(store, plan, ranked, args.save_best, args.task, args.seed,
                              args.budget, args.folds, overwrite=args.overwrite).path)
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
    from featstore.heads.charts import chart_path, check_chart_dir, layer_chart
    from featstore.heads.layer_probe import chance_rate
    from featstore.services.head_runs import probe_all_layers

    check_data_flags(args)
    if args.task != "classification":
        raise HeadError("probe-layers fits logistic regressions; it needs classification labels")
    check_chart_dir(args.plot, args.charts)
    store, plan = _plan(args)
    plot = chart_path(args.plot, args.charts, f"probe-{plan.train_name}.png", args.overwrite)
    enc = store.resolve_encoder(args.model, kind="encoder")
    n = len(store.encoder_entry(enc).fingerprint.get("layers", [])) * 2
    with _progress(n, "probe-layers", args.no_progress) as bar:
        enc, rows = probe_all_layers(store, plan, enc, c=args.C, seed=args.seed, progress=bar)
    chance = chance_rate(plan)
    layer_chart(rows, "accuracy", _chart_title(plan, enc, f"logistic regression per layer, "
                                               f"C {args.C:g}"), plot, chance=chance)
    if args.json:
        print(json.dumps({"dataset": plan.train_name, "encoder": enc, "protocol": plan.protocol,
                          "C": args.C, "chance": chance, "plot": str(plot), "layers": rows},
                         indent=1))
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
    print(f"chance   {score('classification', chance)} (the most frequent label)")
    print(f"chart    {plot}")
    return 0


def _chart_title(plan: Any, encoder: str, what: str) -> str:
    return f"{plan.train_name} · {what}\nencoder {encoder}\n{plan.protocol}"
