"""Every command-line flag, declared once: its type, range or choices, default and help.

A head's flags are made from the parameter declarations (`featstore.heads.params`): the same
name, range, choices and help, checked with the same wording. The other flags are in `FLAGS`.
Commands pick flags by name, so a flag means the same everywhere, its value is checked the
moment it is parsed, and help shows its default. Bad values stop with one line and exit status
2 before any work starts; combinations of flags are checked right after parsing by each
command's `check_*` function.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from featstore.heads.kinds import HEADS, POOLINGS, SEQ_HEADS
from featstore.heads.params import (
    BOOL,
    DECLARED,
    FLOAT,
    INT,
    LAYERS,
    NAMES,
    SEQUENCE_HEAD,
    TEXT_HEAD,
    Param,
    range_reason,
)
from featstore.selection.settings import PROBE_C
from featstore.store.manifest import check_name

EXIT_USAGE = 2
FEATURES = ("cls", "mean", "max", "pooler")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line on stderr (no usage dump) and exit 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


# -- value types: each returns the parsed value or raises ArgumentTypeError with the reason ------
def _number(text: str, kind: Callable[[str], Any]) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _in_range(text: str, kind: Callable[[str], Any], name: str, **bounds: Any
              ) -> Callable[[str], Any]:
    """A parser of numbers within bounds, worded as the parameter checks word it."""
    def parse(text: str) -> Any:
        value = _number(text, kind)
        why = range_reason(value, shown=text if kind is float else None, **bounds)
        if why is not None:
            raise argparse.ArgumentTypeError(why)
        return value
    parse.__name__ = name
    return parse


def int_at_least(low: int) -> Callable[[str], int]:
    return _in_range("", int, f"integer >= {low}", low=low)


positive_float = _in_range("", float, "positive_float", positive=True)
non_negative_float = _in_range("", float, "non_negative_float", low=0.0)
fraction = _in_range("", float, "fraction", low=0.0, high=1.0)  # a share that leaves some over


def cosine(text: str) -> float:
    """A cosine threshold: 0 to 1, both included (1 keeps only identical vectors)."""
    value = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a cosine from 0 to 1, got {text}")
    return value


def one_of(what: str, values: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in values:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r}; choose one of: "
                                             f"{', '.join(values)}")
        return text
    parse.__name__ = what
    parse.choices = values  # type: ignore[attr-defined]  # lets a test see the check
    return parse


def any_int(text: str) -> int:
    return _number(text, int)


def _checked_name(what: str) -> Callable[[str], str]:
    from featstore.store.errors import StoreError

    def parse(text: str) -> str:
        try:
            return check_name(text, what)
        except StoreError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = f"{what} name"
    return parse


def layer_numbers(text: str) -> list[int]:
    """`4`, `4,5,6` or `-1`: layer numbers (several flags' worth are joined by the command)."""
    out = []
    for part in text.split(","):
        if part.strip():
            try:
                out.append(int(part))
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"takes layer numbers like 4 5 6, 4,5,6 or -1, not {part!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("names no layer")
    return out


def featurize_layers(text: str) -> str | list[int]:
    return "all" if text.strip().lower() == "all" else layer_numbers(text)


def feature_list(text: str) -> tuple[str, ...]:
    names = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = [f for f in names if f not in FEATURES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"takes a comma list of {', '.join(FEATURES)}, "
                                         f"not {text!r}")
    return names


def device(text: str) -> str:
    if text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, not {text!r}")


def text_value(text: str) -> str:
    """A free-text value (a path, a column, a model id): no control characters."""
    if not text or any(ord(c) < 32 for c in text):
        raise argparse.ArgumentTypeError(f"must be non-empty without control characters, "
                                         f"got {text!r}")
    return text


@dataclass(frozen=True)
class Flag:
    help: str
    type: Callable[[str], Any] | None = text_value
    default: Any = None
    choices: tuple[str, ...] | None = None
    what: str = "value"  # how a wrong choice is named: "unknown pooling 'avg'"
    nargs: str | None = None
    metavar: str | tuple[str, ...] | None = None
    action: str | type[argparse.Action] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    required: bool = False


SWITCH = None  # a flag with no value: type None, action store_true


def _param_type(p: Param) -> Callable[[str], Any]:
    """The parser of a declared parameter's command-line word."""
    if p.type == LAYERS:
        return layer_numbers
    if p.type == INT:
        return any_int if p.low is None else int_at_least(int(p.low))
    if p.type == FLOAT:
        if p.positive:
            return positive_float
        if (p.low, p.high) == (0.0, 1.0):
            return fraction
        if p.low == 0:
            return non_negative_float
        return _in_range("", float, "number", low=p.low, high=p.high)
    return text_value


def _shown(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, tuple | list) else str(value)


def param_flag(p: Param, default: Any = None, help: str | None = None) -> Flag:  # noqa: A002
    """The flag of a declared parameter. Its default is None (not given), so the estimator's
    own default applies and a value typed equal to it still counts as given; help names the
    default of each estimator that takes it."""
    defaults = [(ps[p.name].default, where) for ps, where in
                ((TEXT_HEAD, ""), (SEQUENCE_HEAD, "with --group-by: ")) if p.name in ps]
    if not defaults:
        defaults = [(p.default, "")]
    shown = [f"{where}{_shown(d)}" for d, where in defaults
             if d not in (None, (), []) and not (where and d == defaults[0][0])]
    text = help or p.help
    if p.name in SEQUENCE_HEAD and p.name not in TEXT_HEAD and p.name != "group_by" and not help:
        text = f"with --group-by: {text}"
    if shown and "default" not in text:
        text += f" (default: {'; '.join(shown)})"
    if p.type == BOOL:  # a switch: typed means True; left out leaves the estimator's default
        return Flag(text, SWITCH, None, action="store_const")
    nargs = "+" if p.type in (LAYERS, NAMES) else None
    metavar = {"layers": "L", "fuse": "SOURCE"}.get(p.name)
    if p.choices is not None:
        return Flag(text, default=default, choices=p.choices, what=p.what or p.command_flag,
                    nargs=nargs, metavar=metavar)
    return Flag(text, _param_type(p), default, nargs=nargs, metavar=metavar)

FLAGS: dict[str, Flag] = {
    # shared
    "--store": Flag("store directory (default: $FEATSTORE_DIR, else ./featstore)"),
    "--json": Flag("machine-readable output on stdout", SWITCH, action="store_true"),
    "--no-progress": Flag("no progress bar", SWITCH, action="store_true"),
    "--model": Flag("Hugging Face id or local directory to encode with, or the short name of "
                    "a model the store holds (default: the bundled all-MiniLM-L6-v2)"),
    "--encoder": Flag("the store's encoder to read, by model name (all-MiniLM-L6-v2), path or "
                      "id (default: its only encoder); in a store with none yet, the model a "
                      "--train file is featurized with (default: the bundled all-MiniLM-L6-v2)"),
    "--text-col": Flag("text column (default: text, sentence, or the only string column)"),
    # featurize
    "--name": Flag("dataset name (default: the file's stem)", _checked_name("dataset")),
    "--max-length": Flag("tokens per window (default: the length this store's encoder of the "
                         "model has; else a sentence-transformers model's max_seq_length; else "
                         "the model's limit, at most 512)", int_at_least(2)),
    "--stride": Flag("tokens shared by consecutive windows of a long text "
                     "(default: min(64, max-length / 4))", int_at_least(0)),
    "--truncate": Flag("cut texts at --max-length instead of windowing them", SWITCH,
                       action="store_true"),
    "--featurize-layers": Flag("'all' or layer numbers like 0 3 -1 (or 0,3,-1) "
                               "(default: all)", str, default=["all"], nargs="+", metavar="L"),
    "--features": Flag(f"comma list of {','.join(FEATURES)} (default: all the model has)",
                       feature_list),
    "--tokens": Flag("also store token-level states (for attention pooling; pairs: soft-align, "
                     "--combine align)", SWITCH,
                     action="store_true"),
    "--laser": Flag("store LASER sentence vectors too; warn when LASER's models are missing "
                    "(default: store them whenever the models are found, silently otherwise)",
                    SWITCH, default=None, action=argparse.BooleanOptionalAction),
    "--laser-dir": Flag("directory holding LASER's model files (default: "
                        "$FEATSTORE_LASER_DIR, else laserembeddings' own data directory)"),
    "--device": Flag("auto, cpu, cuda or cuda:N (default: auto)", device, default="auto"),
    "--batch-tokens": Flag("padded tokens per batch (default 4096 on CPU, 16384 on GPU)",
                           int_at_least(1)),
    "--dtype": Flag("precision the vectors are stored in (default: %(default)s); the encoder "
                    "computes in --compute-dtype, so full float32 values need --compute-dtype "
                    "float32 too", default="float16",
                    choices=("float16", "float32"), what="--dtype"),
    "--compute-dtype": Flag("encoder precision (default: %(default)s: float16 autocast on "
                            "GPU, bfloat16 on CPUs with AMX-BF16 or AVX512-BF16, float32 on "
                            "other CPUs)", default="auto",
                            choices=("auto", "float32", "float16", "bfloat16"),
                            what="--compute-dtype"),
    "--runtime": Flag("what runs the encoder on a CPU (default: %(default)s: OpenVINO for "
                      "passes of 2,000 texts or more where it is installed and serves the "
                      "model, except bfloat16 on AMX-BF16 CPUs; else torch; --tokens always "
                      "uses torch)", default="auto",
                      choices=("auto", "torch", "openvino"),
                      what="--runtime"),
    "--shard-rows": Flag("texts per committed shard: what a killed run can lose at most "
                         "(default: %(default)s)", int_at_least(1), default=2048),
    "--replace": Flag("let this file replace a dataset of the same name made from another "
                      "file", SWITCH, action="store_true"),
    "--strict": Flag("empty or missing texts are an error", SWITCH, action="store_true"),
    "--pair-cols": Flag("the two text columns of a pair corpus: every row is a pair, both texts "
                        "are encoded (each unique text once) and the dataset keeps both keys",
                        nargs=2, metavar=("A", "B")),
    "--cross": Flag("with --pair-cols: also encode each pair jointly (the tokenizer's pair "
                    "encoding) and store its per-layer vectors, and a classifier's logits, as "
                    "the cross source", SWITCH, action="store_true"),
    "--trust-remote-code": Flag("allow the model repository's own code to run", SWITCH,
                                action="store_true"),
    "--wait": Flag("wait for another writer to finish instead of failing", SWITCH,
                   action="store_true"),
    "--engine": Flag("local: this process; ray: an actor pool on a Ray cluster (the store must "
                     "be on a filesystem every node sees) (default: %(default)s)",
                     default="local", choices=("local", "ray"), what="--engine"),
    "--address": Flag("Ray cluster address (default: $RAY_ADDRESS, else a local cluster)"),
    "--workers": Flag("Ray actors, one encoder each (default: one per GPU, else per CPU)",
                      int_at_least(1)),
    "--gpus-per-worker": Flag("GPUs per Ray actor; fractions share a GPU (default 0: CPU)",
                              non_negative_float, default=0.0),
    # import-vectors
    "--source-name": Flag("source name: what `--fuse NAME` and `featstore info` call it",
                          _checked_name("source")),
    "--texts": Flag("for .npy and .raw/.bin vectors: a file with one text per line, line i "
                    "naming vector i", metavar="FILE"),
    "--vector-cols": Flag("the list column holding the vectors, or the prefix of the numeric "
                          "columns that do ('*': every numeric column) (default: the only list "
                          "column, else the largest group of numeric columns named like v0, v1, "
                          "...)", metavar="PREFIX"),
    "--fp16": Flag("a .raw/.bin file holds float16 values, as LASER's own --fp16 writes them "
                   "(default: float32)", SWITCH, action="store_true"),
    "--add": Flag("add the vectors of texts the source NAME lacks (new texts for a head fused "
                  "with it), keeping its fingerprint; texts it holds must come with the same "
                  "vectors", SWITCH, action="store_true"),
    "--dim": Flag("vector width the file must have (default: whatever it has; 1024, LASER's, "
                  "for a .raw/.bin file)", int_at_least(1)),
    # data for heads
    "--train": Flag("training data: a dataset in the store or a corpus file (default: the "
                    "store's only dataset, else the only one with a split column)",
                    metavar="DATASET_OR_FILE"),
    "--eval": Flag("evaluation data (default: the split column, else --cv)",
                   metavar="DATASET_OR_FILE"),
    "--allow-unseen-labels": Flag("score evaluation rows whose label the training rows never "
                                  "show as errors (counted in the output) instead of refusing "
                                  "them", SWITCH, action="store_true"),
    "--cv": Flag("stratified K-fold cross-validation", int_at_least(2), metavar="K"),
    # heads
    "--shots": Flag("sample N examples per label from train (few-shot)", int_at_least(1)),
    "--repeats": Flag("few-shot samples to average (default: %(default)s)", int_at_least(1),
                      default=1),
    "--out": Flag("head name (default: DATASET-POOL-HEAD, then -MODEL when --model is given "
                  "and -fuse-SOURCES with --fuse; DATASET-auto with --auto, DATASET-seq-KIND "
                  "with --group-by)", _checked_name("head")),
    "--overwrite": Flag("replace a head or chart of the same name", SWITCH,
                        action="store_true"),
    "--report": Flag("write a per-class report, a confusion matrix PNG and the misclassified "
                     "examples of the evaluation rows into DIR", metavar="DIR"),
    "--charts": Flag("directory for charts (default: the current directory)", metavar="DIR"),
    "--auto": Flag("search poolings x heads by inner CV on the training rows and keep the "
                   "best (the evaluation rows score only the winner)", SWITCH,
                   action="store_true"),
    "--unlabeled": Flag("with --auto (classification): texts without labels, a dataset in the "
                        "store or a corpus file; the search scores self-training on them "
                        "(pseudo-labels) and keeps it only if the inner folds say it helps; "
                        "evaluation rows are left out", text_value, metavar="DATA"),
    # sequence heads (fit-head/compare --group-by)
    "--seq-heads": Flag("compare --group-by: sequence heads to rank (default: mean last "
                        "mean-last mean-max gru transformer)", nargs="+", metavar="SEQ_HEAD",
                        choices=SEQ_HEADS, what="--seq-head"),
    "--labels": Flag("with --group-by: labels keyed by group, a file with the group column "
                     "and a label column (default: the dataset's label column, constant per "
                     "group)"),
    # predict
    "--head-name": Flag("head name under STORE/heads", _checked_name("head")),
    "--predictions": Flag("file for the predictions, in the format its extension names: .csv, "
                          ".jsonl or .parquet (default: CSV on stdout)"),
    "--text": Flag("a text to predict (repeatable); INPUT may then be left out", text_value,
                   default=None, metavar="TEXT", action="append"),
    "--text-a": Flag("a pair head: the first text of a pair to predict (repeatable, with as "
                     "many --text-b); INPUT may then be left out", text_value, default=None,
                     metavar="TEXT", action="append"),
    "--text-b": Flag("a pair head: the second text of a pair to predict (repeatable)",
                     text_value, default=None, metavar="TEXT", action="append"),
    "--top-k": Flag("only the K most probable labels per text, with their probabilities",
                    int_at_least(1), metavar="K"),
    "--format": Flag("output format (default: from --out's extension, else csv)",
                     choices=("csv", "jsonl", "parquet"), what="--format"),
    # compare, probe-layers
    "--pools": Flag("poolings to try", nargs="+", metavar="POOL", choices=POOLINGS, what="pooling"),
    "--heads": Flag("heads to try", nargs="+", metavar="HEAD", choices=HEADS, what="head"),
    "--plot": Flag("chart PNG"),
    "--save-best": Flag("refit the winner on all training rows and save it as NAME",
                        _checked_name("head"), metavar="NAME"),
    "--probe-C": Flag("L2 inverse strength (default: %(default)s)", positive_float,
                      default=PROBE_C),
    # neighbors, audit
    "--dataset": Flag("the dataset whose texts are searched", _checked_name("dataset"),
                      required=True),
    "--k": Flag("neighbours per query (default: %(default)s)", int_at_least(1), default=10),
    "--index": Flag("exact: compare every stored text (the reference); approx: the HNSW index "
                    "kept in the store (built once, updated when texts are added); auto: approx "
                    "from 100,000 texts on (default: %(default)s)", default="auto",
                    choices=("auto", "exact", "approx"), what="--index"),
    "--threshold": Flag("cosine at and above which two texts count as near-duplicates "
                        "(default: 0.98, chosen on Banking77 with the bundled encoder; see "
                        "README)", cosine),
    "--audit-out": Flag("directory for duplicates.csv, label_issues.csv and map.png (default: "
                        "audit-DATASET)", metavar="DIR"),
}
# a head's flags, made from its parameters' declarations; --task, --seed and --label-col are
# read by every head command, so --task and --seed keep their values when not typed
FLAGS.update({p.command_flag: param_flag(p) for p in DECLARED.values() if p.cli})
FLAGS.update({"--task": param_flag(DECLARED["task"], default=DECLARED["task"].default),
              "--seed": param_flag(DECLARED["seed"], default=DECLARED["seed"].default),
              "--label-col": param_flag(DECLARED["label_col"]),
              "--compare-epochs": param_flag(DECLARED["epochs"], help="torch head epochs")})

# flags whose spec key differs from the flag a user types
_SPELLING = {"--featurize-layers": "--layers", "--encoder": "--model", "--source-name": "--name",
             "--head-name": "--head", "--predictions": "--out", "--compare-epochs": "--epochs",
             "--probe-C": "--C", "--audit-out": "--out"}


def head_flags(params: Any) -> list[str]:
    """The flags of the parameters in `params` that commands offer."""
    return [p.command_flag for p in params if p.cli]


def add_param_flags(parser: argparse.ArgumentParser, params: Any) -> None:
    """A flag for every parameter in `params` that commands offer, made from its declaration
    (how `fit-head` gets a head's flags); those already added are left as they are."""
    taken = {s for a in parser._actions for s in a.option_strings}
    for p in params:
        if p.cli and p.command_flag not in taken:
            _add(parser, p.command_flag, param_flag(p), {})


def given_params(args: argparse.Namespace, params: Any) -> dict[str, Any]:
    """The parameters of `params` whose flags were typed, as the estimator takes them."""
    out = {}
    for p in params:
        value = getattr(args, p.name, None) if p.cli else None
        if value is not None:
            out[p.name] = joined(value) if p.type == LAYERS else value
    return out


def add_flags(p: argparse.ArgumentParser, *keys: str, **overrides: Any) -> None:
    """Add flags by their key in FLAGS; `overrides` (by dest) change help or default."""
    for key in keys:
        _add(p, key, FLAGS[key], overrides)


def _add(p: argparse.ArgumentParser, key: str, spec: Flag, overrides: dict[str, Any]) -> None:
    flag = _SPELLING.get(key, key)
    dest = flag.lstrip("-").replace("-", "_")
    kwargs: dict[str, Any] = {"help": spec.help, "default": spec.default, "dest": dest}
    if spec.action is not None:
        kwargs["action"] = spec.action
        if spec.action == "store_true":
            kwargs["default"] = False
        if spec.action == "store_const":
            kwargs["const"] = True
    if spec.action is None or spec.action == "append":
        kwargs["type"] = spec.type
        if spec.choices is not None:
            kwargs["type"] = one_of(spec.what, spec.choices)
            kwargs["help"] = f"{spec.help}; one of: {', '.join(spec.choices)}"
            kwargs.setdefault("metavar", spec.metavar or flag.lstrip("-").upper())
        if spec.nargs is not None:
            kwargs["nargs"] = spec.nargs
        if spec.metavar is not None:
            kwargs["metavar"] = spec.metavar
    if key == "--head-name" or spec.required:
        kwargs["required"] = True
    kwargs.update(overrides.get(dest, {}))
    p.add_argument(flag, **kwargs)


def joined(values: list[list[int]] | None) -> list[int] | None:
    """Several `--layers` values (each a list) as one list."""
    return [x for v in values for x in v] if values else None
