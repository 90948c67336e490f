"""`fit-head`, `predict`, `compare` and `probe-layers`: heads trained on stored features, per
text or, with `--group-by`, per sequence of rows (the same commands; the unit of example
decides what is grouped and printed).

A --train/--eval file or predict input that the store lacks is featurized first, with the very
encoder (fingerprint) the head uses; that happens in `featstore.services`, not here. A head's
flags come from its parameters' declarations (`featstore.heads.params`), and so do the checks
of which flags go together.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from featstore.cli.flags import add_flags, add_param_flags, given_params, head_flags, text_value
from featstore.cli.text_output import metrics_table, score, table
from featstore.heads.errors import HeadError
from featstore.heads.kinds import HEAD_KINDS, POOLINGS_BY_NAME, SEQ_HEADS
from featstore.heads.names import head_name, sequence_head_what, sources_suffix, text_head_what
from featstore.heads.params import DECLARED, HEAD_SELECTOR, PAIR_HEAD, SEQUENCE_HEAD, TEXT_HEAD
from featstore.selection.settings import COMPARE_HEADS, COMPARE_POOLS, COMPARE_SEQ_HEADS

# -- parsers -------------------------------------------------------------------------------------
DATA_FLAGS = ("--store", "--train", "--eval", "--cv", "--label-col", "--allow-unseen-labels",
              "--task", "--encoder", "--seed", "--json", "--no-progress")
GROUPING = ("group_by", "order_by", "time_col")  # what the sequence unit holds
SEQUENCE_FLAGS = (*head_flags(SEQUENCE_HEAD[n] for n in GROUPING), "--labels")
AUTO_FLAGS = tuple(head_flags(HEAD_SELECTOR[n] for n in ("budget", "folds")))
PAIR_ONLY = tuple(n for n in PAIR_HEAD.names if n not in TEXT_HEAD)  # source, combine, ...


def register_head_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit-head", help="train a pooling/fusion head on stored features",
                       description="Train a head from the store (no encoder pass), report "
                                   "metrics, save it under STORE/heads/NAME.")
    add_flags(p, *DATA_FLAGS)
    add_param_flags(p, TEXT_HEAD)  # a head's flags, from its parameters' declarations
    add_param_flags(p, PAIR_HEAD)
    add_param_flags(p, SEQUENCE_HEAD)
    add_flags(p, "--shots", "--repeats", "--out", "--overwrite", "--report", "--labels",
              "--pair-cols", pair_cols=PAIR_COLS_HELP)
    add_flags(p, "--auto", *AUTO_FLAGS, "--unlabeled")
    p.set_defaults(func=cmd_fit_head)

    p = sub.add_parser("predict", help="predict with a saved head",
                       description="Predictions and class probabilities as CSV, JSONL or JSON; "
                                   "texts not in the store are encoded and stored first. The "
                                   "input's other columns (gold labels too) are kept.")
    p.add_argument("input", metavar="INPUT", type=text_value, nargs="?",
                   help="a dataset in the store, a corpus file, or - for one text per line on "
                        "stdin")
    add_flags(p, "--store", "--head-name", "--text", "--text-a", "--text-b", "--pair-cols",
              "--top-k", "--predictions", "--format", "--overwrite", "--text-col", "--laser-dir",
              "--json", "--no-progress", overwrite={"help": "replace an existing --out file"},
              laser_dir={"help": "directory of LASER's models, for a head fused with LASER "
                                 "given new texts (default: $FEATSTORE_LASER_DIR, else "
                                 "laserembeddings' own data directory)"},
              pair_cols={"help": "a pair head: the two columns of INPUT holding each pair's "
                                 "texts (default: the columns the head was trained on)"})
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
              "--layers", "--pair-cols",
              pair_cols=PAIR_COLS_HELP,
              pools={"help": f"poolings to try (default: {' '.join(COMPARE_POOLS)})"},
              heads={"help": f"heads to try (default: {' '.join(COMPARE_HEADS)})"},
              fuse={"help": "also try mean + these sources (default: laser when stored)"},
              plot={"help": "bar chart PNG (default: CHARTS/compare-DATASET.png)"},
              pool={"help": "with --group-by: the pooling of each message's vector (default: "
                            "mean)"},
              layers={"help": "with --group-by: layers the message vectors average"})
    add_flags(p, *AUTO_FLAGS,
              budget={"help": "seconds --save-best's inner-CV choice may spend (default: "
                              f"{HEAD_SELECTOR['budget'].default})"})
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("probe-layers", help="logistic regression per layer on cls and mean",
                       description="What each layer knows: a logistic regression per stored "
                                   "layer on its CLS and mean vectors; a table and a line plot.")
    add_flags(p, *DATA_FLAGS, "--probe-C", "--plot", "--charts", "--overwrite",
              plot={"help": "line plot PNG (default: CHARTS/probe-DATASET.png)"})
    p.set_defaults(func=cmd_probe)


PAIR_COLS_HELP = {"help": "a --train/--eval file of pairs: its two text columns (a pair dataset "
                          "in the store names its own)"}


# -- which flags go together ---------------------------------------------------------------------
def _typed(args: argparse.Namespace, names: Any) -> list[str]:
    """The declared parameters among `names` whose flags were typed."""
    return [n for n in names if DECLARED[n].cli and getattr(args, n, None) is not None]


def check_data_flags(args: argparse.Namespace) -> None:
    if args.eval is not None and args.cv is not None:
        raise HeadError("use either --eval or --cv, not both")


def check_unit_flags(args: argparse.Namespace, unit: Any = None) -> None:
    """Flags of the other unit: per-text ones with --group-by, sequence ones without it, pair
    ones on texts."""
    pairs = unit is not None and unit.name == "pair"
    if not pairs:
        typed = [DECLARED[n].command_flag for n in _typed(args, PAIR_ONLY)]
        typed += ["--symmetric"] if getattr(args, "symmetric", None) else []
        if typed:
            raise HeadError(f"{typed[0]} applies to pair heads; train on a pair dataset "
                            "(featurize --pair-cols A B)")
    elif args.group_by is not None:
        raise HeadError("--group-by groups texts into sequences; a pair dataset's rows are "
                        "pairs")
    if args.group_by is not None:
        if args.task not in {t for k in SEQ_HEADS for t in HEAD_KINDS[k].tasks}:
            raise HeadError(f"sequence heads classify; --task {args.task} is not supported with "
                            "--group-by")
        only_text = [n for n in TEXT_HEAD.names if n not in SEQUENCE_HEAD]
        refused = [f for f, typed in (("--shots", getattr(args, "shots", None) is not None),
                                      ("--repeats", getattr(args, "repeats", 1) != 1))
                   if typed] + [DECLARED[n].command_flag for n in _typed(args, only_text)]
        if refused:
            raise HeadError(f"{refused[0]} applies to per-text heads; with --group-by choose "
                            "the model with --seq-head")
        return
    only_sequence = [n for n in SEQUENCE_HEAD.names if n not in TEXT_HEAD and n not in GROUPING]
    typed = [DECLARED[n].command_flag for n in _typed(args, GROUPING[1:])]
    typed += ["--labels"] if args.labels is not None else []
    typed += [DECLARED[n].command_flag for n in _typed(args, only_sequence)]
    typed += ["--seq-head"] if getattr(args, "seq_heads", None) else []
    if typed:
        raise HeadError(f"{typed[0]} applies to sequences; it needs --group-by")
    if args.func is cmd_compare and (args.pool is not None or args.layers):
        raise HeadError("compare takes --pool and --layers with --group-by; rank per-text "
                        "poolings with --pools")


def check_fit_head(args: argparse.Namespace, unit: Any = None) -> None:
    """Combinations of fit-head flags that cannot mean anything."""
    check_data_flags(args)
    check_unit_flags(args, unit)
    if args.repeats != 1 and args.shots is None:
        raise HeadError("--repeats repeats few-shot samples; it needs --shots")
    if args.shots is not None and args.task != "classification":
        raise HeadError("--shots samples examples per label; it needs --task classification")
    for name in _typed(args, TEXT_HEAD.names):
        tasks = DECLARED[name].tasks
        if tasks is not None and args.task not in tasks:
            raise HeadError(f"{DECLARED[name].command_flag} applies to {' or '.join(tasks)} "
                            "only")
    if args.C is not None and args.head is not None and \
            HEAD_KINDS[args.head].trained_by != "logreg":
        raise HeadError(f"--C sets logreg's regularisation; --head {args.head} does not use it")
    pairs = unit is not None and unit.name == "pair"
    if pairs and args.unlabeled is not None:
        raise HeadError("--unlabeled serves self-training of per-text heads; pair heads take "
                        "none")
    pool = POOLINGS_BY_NAME[args.pool or TEXT_HEAD["pool"].default]
    if args.layer_start is not None and not pool.takes_layer_start:
        names = [k for k, v in POOLINGS_BY_NAME.items() if v.takes_layer_start]
        raise HeadError(f"--layer-start applies to --pool {' or '.join(names)}")
    if args.of is not None and not pool.takes_of:
        names = [k for k, v in POOLINGS_BY_NAME.items() if v.takes_of]
        raise HeadError(f"--of applies to --pool {', '.join(names[:-1])} or {names[-1]}")
    if args.fuse_mode == "project" and not args.fuse:
        raise HeadError("--fuse-mode project maps fusion sources; name them with --fuse")
    if args.report and args.task != "classification":
        raise HeadError("--report breaks scores down by class; it needs --task classification")
    check_auto(args, PAIR_HEAD if pairs else TEXT_HEAD)


def check_auto(args: argparse.Namespace, params: Any = TEXT_HEAD) -> None:
    """--auto chooses pooling and head itself; --budget, --folds and --unlabeled belong to
    it."""
    if not args.auto:
        for flag in ("budget", "folds", "unlabeled"):
            if getattr(args, flag) is not None:
                raise HeadError(f"--{flag} sets the --auto search; add --auto")
        return
    if args.unlabeled is not None and args.task != "classification":
        raise HeadError("--unlabeled serves self-training, which needs --task classification")
    for name in _typed(args, params.names):
        if DECLARED[name].searched:
            raise HeadError(f"--auto chooses the pooling and head by inner CV; drop "
                            f"{DECLARED[name].command_flag} (or drop --auto)")


# -- what the flags ask for ----------------------------------------------------------------------
def _unit_kind(args: argparse.Namespace) -> Any:
    """What `_unit` will make, named without loading the heads (so flag checks stay fast): an
    object with the unit's `name`, `text`, `pair` or `sequence`."""
    from types import SimpleNamespace

    pair_cols = getattr(args, "pair_cols", None) or _stored_pair_columns(args)
    if pair_cols and args.group_by is not None:
        raise HeadError("--group-by groups texts into sequences; a pair dataset's rows are "
                        "pairs")
    return SimpleNamespace(name="pair" if pair_cols else "sequence" if args.group_by is not None
                           else "text", pair_cols=pair_cols)


def _unit(args: argparse.Namespace) -> Any:
    """The unit of example: a text, a pair (--pair-cols, or a pair dataset to train on), or
    with --group-by a sequence of rows."""
    from featstore.heads.units import TEXT, PairUnit, SequenceUnit

    kind = _unit_kind(args)
    if kind.name == "pair":
        return PairUnit(*kind.pair_cols)
    if kind.name == "text":
        return TEXT
    from featstore.services.datasets import read_rows_file

    labels = read_rows_file(args.labels, "--labels") if args.labels is not None else None
    return SequenceUnit(args.group_by, args.order_by, args.time_col, labels)


def _stored_pair_columns(args: argparse.Namespace) -> list[str] | None:
    """The pair columns of the training dataset in the store (--train, else the one fit-head
    would pick) when it holds pairs; None otherwise (or when there is no store yet)."""
    from featstore.heads.errors import HeadError as NoDefault
    from featstore.heads.training_data import default_training_dataset
    from featstore.store import default_store_path, open_store

    root = default_store_path(args.store)
    if not (root / "manifest.json").is_file():
        return None
    store = open_store(root)
    name = args.train
    if name is None:
        try:
            name = default_training_dataset(store)
        except NoDefault:
            return None
    entry = store.manifest.datasets.get(name)
    return list(entry.pair_columns) if entry is not None and entry.pair_columns else None


def _params(args: argparse.Namespace, unit: Any) -> dict[str, Any]:
    """The head's parameters from the flags typed (the estimator's defaults for the rest)."""
    if unit.name == "sequence":
        params = given_params(args, SEQUENCE_HEAD)
        for name in GROUPING:
            params.pop(name, None)
        return {**params, "encoder": args.model, "label_col": args.label_col}
    if unit.name == "pair":
        return {**given_params(args, PAIR_HEAD), "encoder": args.model}
    return {**given_params(args, TEXT_HEAD), "encoder": args.model}


def _preflight(args: argparse.Namespace, fuse: Any = (), unlabeled: str | None = None) -> Any:
    """The command's data, encoder and sources checked in the store as it is, before anything
    is written (a --train file featurized) and before torch loads."""
    from featstore.services.preflight import check_data

    return check_data(args.store, args.train, args.eval, args.model, fuse, unlabeled)


def _head_name(pre: Any, name: str, overwrite: bool) -> str:
    from featstore.services.preflight import check_head_name

    return check_head_name(pre, name, overwrite)


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _plan(args: argparse.Namespace, unit: Any = None, tokens: bool = False
          ) -> tuple[Any, Any]:
    from featstore.heads.units import TEXT
    from featstore.services.head_runs import plan_data

    store, plan = plan_data(args.store, args.train, args.eval, args.cv, args.label_col,
                            args.task, args.model, tokens, progress=not args.no_progress,
                            say=_say, unit=unit or TEXT,
                            allow_unseen_labels=args.allow_unseen_labels,
                            pair_cols=getattr(args, "pair_cols", None))
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
    from featstore.heads.kinds import pooling

    kind = _unit_kind(args)
    check_fit_head(args, kind)
    if args.group_by is not None and (args.auto or args.report):
        raise HeadError("--auto and --report apply to per-text heads; with --group-by choose "
                        "the sequence model with --seq-head (auto picks by inner CV)")
    if args.auto:
        return _fit_auto(args)
    # every argument and path is checked before anything is written or a model library loads
    pre = _preflight(args, fuse=args.fuse)
    if args.report:
        from featstore.reports.output_paths import report_paths

        report_paths(args.report, args.overwrite)
    if kind.name == "pair":  # its default name comes from the pair estimator itself
        pair = _unit(args)
        what = pair.estimator(args.task, _params(args, pair)).default_name()
    elif kind.name == "sequence":
        what = sequence_head_what({**given_params(args, SEQUENCE_HEAD), "encoder": args.model})
    else:
        what = text_head_what({**given_params(args, TEXT_HEAD), "encoder": args.model},
                              args.task)
    name = _head_name(pre, args.out or head_name(pre.train, what), args.overwrite)
    from featstore.services.head_runs import check_fit, fit_and_save

    unit = _unit(args)
    params = _params(args, unit)
    tokens = unit.name == "text" and pooling(params.get("pool", "mean")).reads_tokens
    store, plan = _plan(args, unit, tokens=tokens)
    check_fit(store, plan, params, args.task, args.shots, args.repeats, args.seed)
    n_runs = (plan.cv or 1) * (args.repeats if args.shots else 1)
    with _progress(n_runs, "fit-head", args.no_progress) as bar:
        saved = fit_and_save(store, plan, params, task=args.task, shots=args.shots,
                             repeats=args.repeats, seed=args.seed, name=name, progress=bar,
                             overwrite=args.overwrite, keep_predictions=bool(args.report))
    if unit.name == "sequence":
        return _print_sequence_fit(saved, args)
    if plan.unit.name == "pair":
        return _print_pair_fit(store, saved, plan, args)
    result, head = saved.result, saved.result.head
    summary = {**result.summary(), "shots": args.shots,
               "repeats": args.repeats if args.shots else None}
    out = {"head": saved.name, "path": str(saved.path), "encoder": head.encoder_id_,
           "pool": head.pool, "head_kind": head.head_kind_, "layers": head.layers_, **summary,
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
    print(f"head      pool {head.pool} · {head.head_kind_}"
          + (f" · fuse {'+'.join(head.fuse)} ({head.fuse_mode})" if head.fuse else "")
          + (f" · C {head.fit_info_['C']:g}" if "C" in head.fit_info_ else "")
          + (f" · {args.shots} shots x {args.repeats}" if args.shots else ""))
    print(metrics_table(args.task, result.metrics, _metric_names(args.task), len(result.runs)))
    print(f"train     {result.train_seconds:.1f} s over {len(result.runs)} run(s)")
    for note in result.notes:
        print(f"note      {note}")
    _print_report(report, args)
    print(f"saved     {saved.path}")
    return 0


def _describe_pair(head: Any) -> str:
    from featstore.selection.candidates import describe_pair

    return describe_pair({k: v for k, v in head.get_params().items()
                          if k in ("pool", "of", "layers", "source", "combine", "head", "C",
                                   "seeds", "symmetric", "fuse") and v not in (None, ())}
                         | {"head": head.head_kind_})


def _pair_baseline(store: Any, plan: Any, args: argparse.Namespace, head: Any
                   ) -> tuple[Any, str]:
    """The cosine baseline under the same plan, and what it reads: the plain cosine of the
    vectors the head reads (each text's top-layer mean for a head that reads no pooled vectors
    of each text), thresholds learned on the training pairs."""
    from featstore.heads.protocols import run_protocol

    params = head.get_params() if hasattr(head, "source") else {}
    base = {"pool": "mean", "encoder": args.model}
    if params.get("source") == "bi":
        base = {k: params[k] for k in ("pool", "layers", "of", "encoder")}
        if POOLINGS_BY_NAME[base["pool"]].trainable:
            base = {"pool": "mean", "encoder": args.model}
    result = run_protocol(store, plan, {**base, "head": "cosine"}, task=args.task,
                          shots=args.shots, repeats=args.repeats, seed=args.seed, refit=False)
    same = params.get("source") == "bi" and base["pool"] == params.get("pool")
    return result, "the same vectors" if same else "each text's top-layer mean"


def _print_baseline(args: argparse.Namespace, baseline: Any, reads: str) -> None:
    main = _metric_names(args.task)[-1 if args.task == "regression" else 0]
    print(f"baseline  cosine of {reads}: {main} "
          f"{score(args.task, baseline.metrics[main])}"
          + (" (thresholds learned on the training pairs)" if args.task == "classification"
             else ""))


def _print_pair_fit(store: Any, saved: Any, plan: Any, args: argparse.Namespace) -> int:
    """A pair head's run, with the cosine baseline under the same plan beside it."""
    result, head = saved.result, saved.result.head
    summary = {**result.summary(), "shots": args.shots,
               "repeats": args.repeats if args.shots else None}
    baseline, reads = _pair_baseline(store, plan, args, head) \
        if head.head_kind_ != "cosine" else (result, "the same vectors")
    report, report_files = _write_report(store, saved, args)
    if args.json:
        out = {"head": saved.name, "path": str(saved.path), "encoder": head.encoder_id_,
               "pool": head.pool, "head_kind": head.head_kind_, "source": head.source,
               "combine": list(head.combine), "layers": head.layers_, **summary,
               "baseline": None if baseline is None else
               {"name": "cosine", "reads": reads, "metrics": baseline.metrics},
               "fit": head.fit_info_, "notes": result.notes,
               **({"report": report_files} if report_files else {})}
        print(json.dumps(out, indent=1, default=str))
        return 0
    cols = " + ".join(plan.unit.text_columns)
    print(f"dataset   {plan.train_name} (pairs {cols}; {plan.protocol}; {summary['train_rows']} "
          "train pairs" + (f", {summary['eval_rows']} eval pairs" if summary["eval_rows"]
                           else "") + ")")
    print(f"encoder   {head.encoder_id_}  layers {head.layers_ or '-'}")
    print(f"head      {_describe_pair(head)}"
          + (f" · C {head.fit_info_['C']:g}" if "C" in head.fit_info_ else "")
          + (f" · alpha {head.fit_info_['alpha']:g}" if "alpha" in head.fit_info_ else ""))
    names = _metric_names(args.task) + (("positive_f1",) if "positive_f1" in result.metrics
                                        else ())
    print(metrics_table(args.task, result.metrics, names, len(result.runs)))
    _print_baseline(args, baseline, reads)
    print(f"train     {result.train_seconds:.1f} s over {len(result.runs)} run(s)")
    for note in result.notes:
        print(f"note      {note}")
    _print_report(report, args)
    print(f"saved     {saved.path}")
    return 0


def _print_sequence_fit(saved: Any, args: argparse.Namespace) -> int:
    result, head = saved.result, saved.result.head
    summary = result.summary()
    if args.json:
        print(json.dumps({"head": saved.name, "path": str(saved.path), "pool": head.pool,
                          "group_by": args.group_by, **summary, "fit": head.fit_info_,
                          "notes": result.notes}, indent=1, default=str))
        return 0
    rows = summary["train_rows"] + (summary["eval_rows"] or 0)
    print(f"dataset   {summary['train']} ({summary['protocol']}; {summary['sequences']} "
          f"sequences of {rows} rows, grouped by {args.group_by})")
    c = head.fit_info_.get("C")
    print(f"head      sequence {head.kind_}" + (" (auto)" if head.seq_head == "auto" else "")
          + f" · {head.layout_.describe()}" + (f" · C {c:g}" if c is not None else "")
          + (f" · times {args.time_col}" if args.time_col else ""))
    _print_sequence_search(head.fit_info_)
    print(metrics_table("classification", result.metrics, ("accuracy", "macro_f1"),
                        len(result.runs)))
    print(f"train     {result.train_seconds:.1f} s over {len(result.runs)} run(s)")
    for note in result.notes:
        print(f"note      {note}")
    print(f"saved     {saved.path}")
    return 0


def _print_sequence_search(info: dict[str, Any]) -> None:
    """What `--seq-head auto` tried (the best inner accuracy of each head on each layout, over
    C) and what it chose."""
    search = info.get("search")
    if not search:
        return
    layouts = list(dict.fromkeys(r["layout"] for r in search))
    kinds = list(dict.fromkeys(r["seq_head"] for r in search))
    best: dict[tuple[str, str], float] = {}
    for r in search:
        key = (r["layout"], r["seq_head"])
        best[key] = max(best.get(key, -1.0), r["inner_accuracy"])
    print(f"search    {len(search)} candidates · {info['inner_folds']}-fold inner CV on the "
          "training sequences (groups whole) · accuracy, best C per cell")
    rows = [[lay, *(score("classification", best[(lay, k)]) if (lay, k) in best else "-"
                    for k in kinds)] for lay in layouts]
    print(table(["layout", *kinds], rows))
    won = info["chosen"]
    print(f"chose     {won['name']} (inner {won['inner_accuracy'] * 100:.2f} ± "
          f"{won['std'] * 100:.2f}; search {info.get('search_seconds', 0.0):.0f} s)")


def _write_report(store: Any, saved: Any, args: argparse.Namespace
                  ) -> tuple[Any, dict[str, str] | None]:
    """`--report DIR`: the evaluation rows' per-class scores, confusion matrix and errors."""
    if not args.report:
        return None, None
    from featstore.services.head_reports import write_report

    report, paths = write_report(store, saved, args.report, args.overwrite)
    return report, {k: str(v) for k, v in paths.items()}


def _print_report(report: Any, args: argparse.Namespace) -> None:
    if report is None:
        return
    worst = report.per_class.head(5)
    print(f"report    {report.rows} evaluated rows, {len(report.errors)} misclassified; "
          "lowest F1: " + ", ".join(f"{r.label} {100 * r.f1:.1f}" for r in worst.itertuples()))
    if len(report.pairs):
        print("confused  " + "; ".join(f"{r.gold} -> {r.predicted} {r.count}x"
                                       for r in report.pairs.head(5).itertuples())
              + " (gold -> predicted; all in confused_pairs.csv)")
    print(f"          {args.report}/classes.csv · confusion.png · confused_pairs.csv · "
          "errors.csv (surest mistakes first)")


def _fit_auto(args: argparse.Namespace) -> int:
    pre = _preflight(args, fuse=args.fuse, unlabeled=args.unlabeled)
    if args.report:
        from featstore.reports.output_paths import report_paths

        report_paths(args.report, args.overwrite)  # refused now, not after the search
    auto = "auto" + sources_suffix(args.model, args.fuse)
    name = _head_name(pre, args.out or head_name(pre.train, auto), args.overwrite)
    from featstore.services.head_runs import select_and_save

    store, plan = _plan(args, _unit(args))
    unlabeled = None
    if args.unlabeled is not None:
        from featstore.services.datasets import dataset_for

        unlabeled = dataset_for(args.store, args.unlabeled, args.model,
                                progress=not args.no_progress, say=_say)
        store.refresh()  # the handle must see the dataset just featurized
    budget = HEAD_SELECTOR["budget"].default if args.budget is None else args.budget
    folds = HEAD_SELECTOR["folds"].default if args.folds is None else args.folds
    with _progress(0, "fit-head --auto", args.no_progress) as bar:
        saved = select_and_save(store, plan, task=args.task, shots=args.shots,
                                repeats=args.repeats, seed=args.seed, name=name,
                                budget=budget, folds=folds, encoder=args.model,
                                fuse=tuple(args.fuse or ()) or None, unlabeled=unlabeled,
                                progress=bar, overwrite=args.overwrite,
                                keep_predictions=bool(args.report))
    result = saved.result
    searches = saved.searches or []
    head = searches[0].best_estimator_
    report, report_files = _write_report(store, saved, args)
    summary = {**result.summary(), "shots": args.shots,
               "repeats": args.repeats if args.shots else None}
    pairs = plan.unit.name == "pair"
    baseline, reads = _pair_baseline(store, plan, args, head) if pairs else (None, "")
    if args.json:
        print(json.dumps({"head": saved.name, "path": str(saved.path),
                          "encoder": head.encoder_id_, "winner": searches[0].best_params_,
                          **summary, "fit": head.fit_info_, "notes": result.notes,
                          **({"baseline": {"name": "cosine", "reads": reads,
                                           "metrics": baseline.metrics}}
                             if baseline is not None else {}),
                          **({"report": report_files} if report_files else {}),
                          "searches": [s.record() for s in searches]}, indent=1, default=str))
        return 0
    first = searches[0]
    what = "pairs" if pairs else "rows"
    print(f"dataset   {plan.train_name} ("
          + (f"pairs {' + '.join(plan.unit.text_columns)}; " if pairs else "")
          + f"{plan.protocol}; {summary['train_rows']} train {what}"
          + (f", {summary['eval_rows']} eval {what}" if summary["eval_rows"] else "") + ")")
    print(f"search    {len(first.trials_)} candidates · {first.n_folds_}-fold inner CV on the "
          f"training rows · {first.metric_} · budget {budget:g} s"
          + (f" shared by {len(searches)} searches" if len(searches) > 1 else ""))
    rows = [[t.candidate.name,
             "-" if not t.scores else score(args.task, t.mean) if len(t.scores) == 1 else
             f"{score(args.task, t.mean)} ± {score(args.task, t.std)}",
             str(len(t.scores)), f"{t.seconds:.1f}", t.status]
            for t in first.trials_]
    print(table(["candidate", f"inner {first.metric_}", "folds", "s", "status"], rows))
    mix = first.ensemble_
    if "inner_score" in mix:
        label = "stack" if args.task == "regression" else "ensemble"
        print(f"{label:<9} inner {score(args.task, mix['inner_score'])} vs best single "
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
    names = _metric_names(args.task) + (("positive_f1",) if "positive_f1" in result.metrics
                                        else ())
    print(metrics_table(args.task, result.metrics, names, len(result.runs),
                        header="winner's eval metric"))
    if baseline is not None:
        _print_baseline(args, baseline, reads)
    for note in result.notes:
        print(f"note      {note}")
    _print_report(report, args)
    print(f"saved     {saved.path}")
    return 0


# -- predict -------------------------------------------------------------------------------------
def cmd_predict(args: argparse.Namespace) -> int:
    from featstore.heads.artifacts import read_head_json
    from featstore.services.prediction_files import output_target, write_predictions
    from featstore.store import open_store

    if args.json and (args.out or args.format):
        raise HeadError("--json prints to stdout; it does not combine with --out or --format")
    if args.overwrite and not args.out:
        raise HeadError("--overwrite replaces an --out file; it needs --out")
    target, fmt = output_target(args.out, args.format, args.overwrite)  # before any work
    store = open_store(args.store)
    kind = read_head_json(store, args.head).get("kind", "text")  # no head: refused at once
    pairs = _inline_pairs(args)
    if kind == "sequence" and (args.top_k or args.text or args.input in (None, "-")):
        raise HeadError(f"head {args.head} is a sequence head: name a dataset or a file of "
                        "rows with its group column (--text, stdin and --top-k are for per-text "
                        "heads)")
    if args.input is None and not args.text and not pairs:
        raise HeadError("nothing to predict: name a dataset or file, pass --text (--text-a and "
                        "--text-b for a pair head), or pipe texts on stdin with INPUT -")
    if args.input not in (None, "-") and args.input not in store.manifest.datasets and \
            not Path(args.input).is_file():
        raise HeadError(f"{args.input!r} is neither a dataset in store {store.root} nor a file")
    from featstore.heads.loading import load_head
    from featstore.heads.units import unit_of
    from featstore.services.predictions import predict_frame, prediction_input, stdin_texts

    head = load_head(store, args.head)
    unit = unit_of(head)
    if args.pair_cols:
        if unit.name != "pair":
            raise HeadError(f"--pair-cols names the text columns of a pair head's input; head "
                            f"{args.head} is a {unit.name} head")
        from featstore.heads.units import PairUnit

        unit = PairUnit(*args.pair_cols)
    texts = list(args.text or [])
    source = args.input
    if source == "-" and unit.lone_texts:
        texts += stdin_texts(sys.stdin)
        source = None
    given = prediction_input(store, unit, source, args.text_col, texts, f"head {args.head}",
                             say=_say, pairs=pairs)
    skipped = given.skipped
    if skipped and unit.lone_texts:
        _say(f"skipped {skipped} input row(s) without text")
    out = predict_frame(store, head, given.rows, progress=not args.no_progress, say=_say,
                        name=f"head {args.head}", top_k=args.top_k, laser_dir=args.laser_dir,
                        unit=unit)
    if args.json:
        print(json.dumps({"head": args.head, "rows": len(out), "skipped": skipped,
                          "predictions": out.to_dict(orient="records")},
                         indent=1, default=str, ensure_ascii=False))
        return 0
    write_predictions(out, target, fmt, sys.stdout)
    if target is not None:
        print(f"wrote {len(out)} predictions to {args.out}", file=sys.stderr)
    return 0


def _inline_pairs(args: argparse.Namespace) -> list[tuple[str, str]]:
    a, b = list(args.text_a or []), list(args.text_b or [])
    if len(a) != len(b):
        raise HeadError(f"--text-a and --text-b come in pairs; got {len(a)} --text-a and "
                        f"{len(b)} --text-b")
    return list(zip(a, b, strict=True))


def cmd_heads_list(args: argparse.Namespace) -> int:
    from featstore.services.head_listing import describe_heads

    rows = describe_heads(args.store)
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return 0
    if not rows:
        print("no heads saved")
        return 0
    body = [[r["name"], r["task"], r["pool"] or "-", r["head"] or "-", r["encoder"],
             "+".join(r["fuse"]) or "-", r["dataset"] or "-", r["metric"],
             "-" if r["score"] is None else score(r["task"], r["score"]), r["created"]]
            for r in rows]
    print(table(["name", "task", "pool", "head", "encoder", "fuse", "dataset", "metric", "score",
                 "created"], body))
    for r in rows:
        if r.get("kind") in ("ensemble", "sequence"):
            print(f"{r['name']}: {r['description']}")
    return 0


def cmd_heads_rm(args: argparse.Namespace) -> int:
    from featstore.heads.artifacts import remove_head
    from featstore.store import default_store_path

    remove_head(default_store_path(args.store), args.name)
    print(f"removed head {args.name}")
    return 0


# -- compare -------------------------------------------------------------------------------------
def cmd_compare(args: argparse.Namespace) -> int:
    check_data_flags(args)
    kind = _unit_kind(args)
    check_unit_flags(args, kind)
    sequences = kind.name == "sequence"
    searching = args.budget is not None or args.folds is not None
    if sequences:
        if args.pools or args.heads:
            raise HeadError("--pools and --heads rank per-text heads; with --group-by name "
                            "sequence heads with --seq-heads")
        if args.save_best and searching:
            raise HeadError("--budget and --folds set the per-text search; with --group-by "
                            "--save-best chooses by 3-fold inner CV on the training sequences")
    elif not args.save_best and searching:
        raise HeadError("--budget and --folds set how --save-best chooses; add --save-best")
    from featstore.reports.output_paths import chart_path

    pre = _preflight(args, fuse=args.fuse)
    plot = chart_path(args.plot, args.charts, f"compare-{pre.train}.png", args.overwrite)
    if args.save_best:
        _head_name(pre, args.save_best, args.overwrite)
    from featstore.heads.metrics import primary_metric
    from featstore.reports.charts import chart_title, leaderboard_chart
    from featstore.selection.compare import pair_grid, score_spread, sequence_grid
    from featstore.selection.layer_probe import chance_rate
    from featstore.services.comparisons import compare_heads, comparison_grid, save_best

    unit = _unit(args)
    store, plan = _plan(args, unit)
    if unit.name == "sequence":
        base = _params(args, unit)
        if args.epochs:
            base["epochs"] = args.epochs
        entries = sequence_grid(tuple(args.seq_heads or COMPARE_SEQ_HEADS), base)
        what = f"sequence heads by {args.group_by}"
    elif plan.unit.name == "pair":
        base = {"encoder": args.model, **({"epochs": args.epochs} if args.epochs else {})}
        classes = len(set(plan.train[plan.label_col])) if args.task == "classification" else 0
        entries = pair_grid(store, tuple(args.pools) if args.pools else None,
                            tuple(args.heads) if args.heads else None, args.task, base, classes)
        what = "compare pair heads"
    else:
        base = {"encoder": args.model, **({"epochs": args.epochs} if args.epochs else {})}
        entries = comparison_grid(store, tuple(args.pools or COMPARE_POOLS),
                                  tuple(args.heads or COMPARE_HEADS), tuple(args.fuse or ()),
                                  args.task, base)
        what = "compare"
    start = time.perf_counter()
    with _progress(len(entries), "compare", args.no_progress) as bar:
        ranked = compare_heads(store, plan, entries, args.task, args.seed, bar)
    total = time.perf_counter() - start
    metric = primary_metric(args.task)
    done = [e for e in ranked if e.result]
    title = chart_title(store, plan.train_name, what,
                        store.resolve_encoder(args.model, kind="encoder"), plan.protocol)
    errors, spread = score_spread(plan, done, metric)
    leaderboard_chart([e.name for e in done], [e.result.metrics[metric] for e in done], metric,
                      title, plot, errors=errors, spread=spread,
                      chance=chance_rate(plan) if args.task == "classification" else None)
    saved = None
    if args.save_best:
        budget = HEAD_SELECTOR["budget"].default if args.budget is None else args.budget
        folds = HEAD_SELECTOR["folds"].default if args.folds is None else args.folds
        saved = str(save_best(store, plan, ranked, args.save_best, args.task, args.seed,
                              budget, folds, overwrite=args.overwrite).path)
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
    examples = f"{len(plan.training_examples()) + (plan.eval_examples or 0)} sequences" \
        if unit.name == "sequence" else f"{len(plan.train)} train rows"
    print(f"dataset  {plan.train_name} ({plan.protocol}; {examples})")
    rows = [[str(i + 1), e.name, *(score(args.task, e.result.metrics[m]) for m in names),
             f"{e.result.train_seconds:.1f}"] for i, e in enumerate(done)]
    what = "sequence head" if unit.name == "sequence" else "configuration"
    print(table(["#", what, *names, "train s"], rows))
    for e in ranked:
        if e.skipped:
            print(f"skipped  {e.name}: {e.skipped}")
    if plan.overlap:
        what = "pair(s)" if plan.unit.name == "pair" else "text(s)"
        print(f"note     {plan.overlap} evaluation {what} also occur in the training rows")
    print(f"total    {total:.1f} s · chart {plot}" + (f" · saved {saved}" if saved else ""))
    return 0


# -- probe-layers --------------------------------------------------------------------------------
def cmd_probe(args: argparse.Namespace) -> int:
    check_data_flags(args)
    if args.task != "classification":
        raise HeadError("probe-layers fits logistic regressions; it needs classification labels")
    from featstore.reports.output_paths import chart_path

    pre = _preflight(args)
    plot = chart_path(args.plot, args.charts, f"probe-{pre.train}.png", args.overwrite)
    from featstore.reports.charts import chart_title, layer_chart
    from featstore.selection.layer_probe import chance_rate
    from featstore.services.comparisons import probe_all_layers

    store, plan = _plan(args)
    enc = store.resolve_encoder(args.model, kind="encoder")
    n = len(store.encoder_entry(enc).fingerprint.get("layers", [])) * 2
    with _progress(n, "probe-layers", args.no_progress) as bar:
        enc, rows = probe_all_layers(store, plan, enc, c=args.C, seed=args.seed, progress=bar)
    chance = chance_rate(plan)
    layer_chart(rows, "accuracy", chart_title(store, plan.train_name, "logistic regression per "
                                              f"layer, C {args.C:g}", enc, plan.protocol),
                plot, chance=chance)
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
