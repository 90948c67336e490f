"""Every estimator parameter, declared once: its name, type, range or choices, default and one
line of help. The estimators' `__init__` signatures, their validation, the saved config, the
command line's flags (`featstore.cli.flags`) and `--auto`'s descriptions all derive from these
declarations; an estimator lists the names it takes (a `ParamSet`), with its own default where it
differs.

A bad value is a `ParamError`: a ValueError worded with the parameter's name (`lr must be
positive, got -1`), which the command line rewords with the flag (`--lr must be positive`).
Light: no torch, no scikit-learn, so the command line builds its flags without loading them.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from featstore.heads import kinds
from featstore.heads.errors import ParamError, literal

# how a declared value is read: from Python (check) and from a command-line word (parse)
INT, FLOAT, TEXT, BOOL, LAYERS, NAMES, ANY = ("int", "float", "text", "bool", "layers",
                                              "names", "any")


@dataclass(frozen=True)
class Param:
    """One parameter. `low`/`high`: inclusive lower and exclusive upper bounds; `positive`:
    above 0; `choices` (with `what`, how a wrong one is named: "unknown pooling 'x'");
    `optional`: None is allowed (it means "choose for me"); `flag`: the command-line spelling
    where it is not --NAME; `cli`: whether commands offer it; `tasks`: the tasks it applies to;
    `searched`: `fit-head --auto` chooses it, so the command refuses it there; `formerly`: the
    name saved heads of older versions used for it."""

    name: str
    type: str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    positive: bool = False
    choices: tuple[str, ...] | None = None
    what: str | None = None
    optional: bool = False
    flag: str | None = None
    cli: bool = True
    tasks: tuple[str, ...] | None = None
    searched: bool = False
    formerly: str | None = None

    @property
    def command_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def reason(self, value: Any, allow_none: bool = False) -> str | None:
        """Why `value` cannot be this parameter's value ("must be positive, got -1"), or None
        when it can."""
        if value is None:
            return None if allow_none or self.optional else "must be given, got None"
        if self.type in (LAYERS, NAMES):
            if isinstance(value, str | bytes) or not isinstance(value, Sequence | tuple):
                return f"must be a list, got {value!r}"
            for item in value:
                why = self._item_reason(item)
                if why is not None:
                    return why
            return None
        return self._item_reason(value)

    def _item_reason(self, value: Any) -> str | None:
        kind = {LAYERS: INT, NAMES: TEXT}.get(self.type, self.type)
        if kind == INT:
            if isinstance(value, bool) or not isinstance(value, (int, *_integer_types())):
                return f"must be an integer, got {value!r}"
            return range_reason(int(value), self.low, self.high, self.positive, str(value))
        if kind == FLOAT:
            if isinstance(value, bool) or not isinstance(value, (int, float, *_float_types())):
                return f"must be a number, got {value!r}"
            if not math.isfinite(float(value)):
                return f"must be a finite number, got {value}"
            return range_reason(float(value), self.low, self.high, self.positive, str(value))
        if kind == BOOL:
            return None if isinstance(value, bool) else f"must be True or False, got {value!r}"
        if kind == TEXT:
            if not isinstance(value, str):
                return f"must be a string, got {value!r}"
            if self.choices is not None and value not in self.choices:
                return f"is not one of: {', '.join(self.choices)}"
        return None

    def check(self, value: Any, allow_none: bool = False) -> None:
        """Raise a ParamError naming this parameter when `value` cannot be its value."""
        why = self.reason(value, allow_none)
        if why is None:
            return
        if why.startswith("is not one of") and not isinstance(value, list | tuple):
            named = self.what or f"{{{self.name}}}"
            raise ParamError(f"unknown {named} {literal(repr(value))}; choose one of: "
                             f"{', '.join(self.choices or ())}")
        if why.startswith("is not one of"):
            bad = next(v for v in value if v not in (self.choices or ()))
            raise ParamError(f"{{{self.name}}} holds unknown {literal(repr(bad))}; choose from: "
                             f"{', '.join(self.choices or ())}")
        raise ParamError(f"{{{self.name}}} {literal(why)}")


def _integer_types() -> tuple[type, ...]:
    import numpy as np

    return (np.integer,)


def _float_types() -> tuple[type, ...]:
    import numpy as np

    return (np.integer, np.floating)


def range_reason(value: float, low: float | None = None, high: float | None = None,
                 positive: bool = False, shown: str | None = None) -> str | None:
    """The one wording of a value out of range, for Python and the command line alike
    (`shown`: the value as it was typed)."""
    got = shown if shown is not None else value
    if positive and not value > 0:
        return f"must be positive, got {got}"
    if low is not None and high is not None and not low <= value < high:
        return f"must be at least {low:g} and below {high:g}, got {got}"
    if low is not None and value < low:
        if low == 0 and isinstance(value, float):
            return f"must be 0 or more, got {got}"
        return f"must be at least {low:g}, got {got}"
    return None


def _p(name: str, type_: str, default: Any, help: str, **rules: Any) -> Param:  # noqa: A002
    return Param(name, type_, default, help, **rules)


FRACTION = {"low": 0.0, "high": 1.0}

# -- the declarations ----------------------------------------------------------------------------
DECLARED: dict[str, Param] = {p.name: p for p in (
    # where the data lives and what encodes it
    _p("store", ANY, None, "the store: a path or an open store (fit(store, data) works too)",
       optional=True, cli=False),
    _p("encoder", TEXT, None, "the store's encoder, by model name or id (default: its only one)",
       optional=True, flag="--model", cli=False),
    _p("label_col", TEXT, None, "label column (default: label, category)", optional=True,
       cli=False),
    _p("seed", INT, 0, "random seed", low=0, cli=False),
    _p("task", TEXT, "classification", "classification or regression", choices=kinds.TASKS,
       cli=False),
    # what a head reads
    _p("pool", TEXT, "mean", "pooling", choices=kinds.POOLINGS, what="pooling", searched=True),
    _p("layers", LAYERS, None, "layer numbers (0 = embeddings, negative from the top): 4 5 6 or "
       "4,5,6", optional=True, searched=True),
    _p("layer_start", INT, None, "weighted/lstm: first layer used", optional=True,
       searched=True),
    _p("of", TEXT, None, "concat/weighted/lstm input", choices=kinds.OF_CHOICES, optional=True,
       searched=True),
    _p("fuse", NAMES, (), "extra vector sources: laser, vectors imported by import-vectors (by "
       "their name), or another encoder in the store"),
    _p("fuse_mode", TEXT, "concat", "how sources are joined", choices=kinds.FUSE_MODES,
       searched=True),
    _p("normalize", TEXT, "standard", "per-source normalisation", choices=kinds.NORMALIZATIONS),
    # per-text heads
    _p("head", TEXT, None, "head; pairs also take ridge (regression), cosine (the plain "
       "cosine, the baseline) and projection, a learned map of each vector scored by cosine "
       "(default: logreg for fixed poolings, else mlp; on pairs, ridge for regression)",
       choices=kinds.HEADS, what="head", optional=True, searched=True),
    _p("hidden", INT, 512, "MLP width; the LSTM uses at most 128", low=1),
    _p("dropout", FLOAT, 0.5, "dropout in [0, 1)", **FRACTION),
    _p("epochs", INT, 40, "torch head epochs", low=1),
    _p("min_steps", INT, 0, "sequence transformer: at least this many optimizer steps (more "
       "epochs on a small training set)", low=0, cli=False),
    _p("lr", FLOAT, 1e-3, "learning rate", positive=True),
    _p("weight_decay", FLOAT, 1e-2, "AdamW weight decay", low=0.0, cli=False),
    _p("batch_size", INT, 256, "torch head minibatch", low=1),
    _p("patience", INT, 8, "epochs without a better validation score before training stops",
       low=1, cli=False),
    _p("label_smoothing", FLOAT, 0.1, "classification only, in [0, 1)", tasks=("classification",),
       searched=True, **FRACTION),
    _p("valid_fraction", FLOAT, 0.1, "share of train held out for early stopping, in [0, 1) "
       "(0: train all epochs)", **FRACTION),
    _p("C", FLOAT, None, "logreg inverse L2 strength (default: chosen by inner CV)",
       positive=True, optional=True, searched=True),
    _p("max_iter", INT, 100, "logistic regression iterations", low=1, cli=False),
    _p("proj_dim", INT, 256, "width each source is projected to (--fuse-mode project)", low=1,
       cli=False),
    _p("seeds", INT, 1, "torch heads: average the probabilities of N seeds (N x train time)",
       low=1, searched=True, formerly="ensemble"),
    # pair heads
    _p("source", TEXT, "bi", "what a pair head reads: bi (each text's vectors, combined), cross "
       "(the pair encoded jointly: featurize --cross) or both", choices=kinds.PAIR_SOURCES,
       what="--source", searched=True),
    _p("combine", NAMES, ("u", "v", "absdiff", "product"), "how a pair's two vectors u, v make "
       "its row: u v absdiff (|u-v|) product (u*v) cosine (per layer, feature and source) align "
       "(how their token states align, per layer: featurize --tokens)",
       choices=kinds.PAIR_PARTS, searched=True),
    _p("symmetric", BOOL, False, "the pair's order does not matter: train on both orders and "
       "average the predictions of both"),
    _p("pair_cols", NAMES, None, "the two columns of a DataFrame holding each pair's texts "
       "(default: a pair dataset's, else a two-column frame's)", optional=True, cli=False),
    _p("cosent_scale", FLOAT, 20.0, "projection: the CoSENT loss's scale on cosine differences",
       positive=True, cli=False),
    # sequence heads
    _p("seq_head", TEXT, "auto", "the model over a sequence (auto: picked by inner CV on the "
       "training sequences)", choices=kinds.SEQ_HEADS),
    _p("group_by", TEXT, "group", "group rows into sequences by this column; one label per "
       "group, evaluation keeps each sequence whole"),
    _p("order_by", TEXT, None, "order each sequence by this column (default: row order)",
       optional=True),
    _p("time_col", TEXT, None, "event times (seconds or dates); the time since the previous "
       "event enters transformer/gru heads, log-bucketed", optional=True),
    _p("width", INT, 64, "sequence network width", low=1, cli=False),
    _p("depth", INT, 1, "transformer layers", low=1, cli=False),
    _p("n_heads", INT, 4, "transformer attention heads (width must be a multiple)", low=1,
       cli=False),
    _p("classifier", TEXT, "linear", "the layer after a sequence network",
       choices=kinds.SEQUENCE_CLASSIFIERS, cli=False),
    _p("max_len", INT, 64, "messages kept per sequence (its last ones)", low=1, cli=False),
    _p("inner_cv", INT, 3, "inner folds auto chooses by", low=2, cli=False),
    _p("candidates", NAMES, kinds.SEQUENCE_SEARCHED, "the sequence heads auto chooses among",
       choices=kinds.SEQUENCE_KINDS, cli=False),
    # ensembles of heads
    _p("members", ANY, (), "the members' parameter dicts", cli=False),
    _p("weights", ANY, None, "one weight per member (default: equal): positive for a classifier "
       "ensemble, of any sign for a regression stack", optional=True, cli=False),
    _p("intercept", FLOAT, 0.0, "what a regression stack adds to its members' weighted "
       "predictions", cli=False),
    _p("unit", TEXT, "text", "what each member reads: a text, or a pair of texts",
       choices=("text", "pair"), cli=False),
    # choosing a head by inner cross-validation
    _p("budget", FLOAT, 600.0, "seconds the --auto search (and refit) may spend; few-shot "
       "repeats share it", positive=True),
    _p("folds", INT, 3, "inner cross-validation folds on the training rows for --auto and "
       "compare --save-best", low=2),
    _p("search_space", ANY, None, "parameter dicts to choose among (default: the candidates "
       "for the store)", optional=True, cli=False),
    _p("allow_ensemble", BOOL, True, "let a weighted mix of the finalists (regression: a "
       "stack) replace the winner when the inner folds prefer it", cli=False),
)}


def flag_for(name: str) -> str:
    """The command-line flag of a declared parameter (for messages); --NAME otherwise."""
    p = DECLARED.get(name)
    return p.command_flag if p is not None else "--" + name.replace("_", "-")


class ParamSet:
    """The parameters one estimator takes, in signature order: declared names, the first
    `positional` of them positional, with this estimator's defaults where they differ from the
    declarations'."""

    def __init__(self, names: Iterable[str], positional: int = 0,
                 defaults: Mapping[str, Any] | None = None) -> None:
        names = list(names)
        unknown = [n for n in names if n not in DECLARED]
        if unknown:
            raise ParamError(f"undeclared parameter(s): {', '.join(unknown)}")
        defaults = dict(defaults or {})
        self.params: dict[str, Param] = {
            n: replace(DECLARED[n], default=defaults[n]) if n in defaults else DECLARED[n]
            for n in names}
        self.positional = positional

    def __iter__(self):
        return iter(self.params.values())

    def __contains__(self, name: object) -> bool:
        return name in self.params

    def __getitem__(self, name: str) -> Param:
        return self.params[name]

    @property
    def names(self) -> list[str]:
        return list(self.params)

    def plus(self, *params: Param) -> ParamSet:
        """These parameters and `params`, declared by the caller: how a subclass of an
        estimator adds one."""
        out = ParamSet([], self.positional)
        out.params = {**self.params, **{p.name: p for p in params}}
        return out

    def defaults(self) -> dict[str, Any]:
        return {n: p.default for n, p in self.params.items()}

    def signature(self) -> inspect.Signature:
        kinds = [inspect.Parameter.POSITIONAL_OR_KEYWORD] * self.positional
        out = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        for i, p in enumerate(self.params.values()):
            kind = kinds[i] if i < len(kinds) else inspect.Parameter.KEYWORD_ONLY
            out.append(inspect.Parameter(p.name, kind, default=p.default))
        return inspect.Signature(out)

    def validate(self, values: Mapping[str, Any]) -> None:
        """Every value checked against its declaration (a default of None allows None)."""
        for name, p in self.params.items():
            p.check(values.get(name, p.default), allow_none=p.default is None)

    def to_config(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The values as JSON would keep them (sequences as lists), without the store."""
        out = {}
        for name, p in self.params.items():
            if name == "store":
                continue
            v = values[name]
            out[name] = list(v) if p.type in (LAYERS, NAMES) and v is not None else v
        return out

    def from_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Constructor arguments from a saved config: its known names (and the names older
        versions saved them under), lists of names back as tuples."""
        out = {}
        for name, p in self.params.items():
            key = name if name in config else p.formerly
            if key is None or key not in config:
                continue
            v = config[key]
            out[name] = tuple(v) if p.type == NAMES and v is not None else v
        return out

    def describe(self) -> str:
        """The parameters as a docstring section (for help())."""
        return "\n".join(f"    {p.name}: {p.help} (default: {p.default!r})" for p in self)


def declared_init(params: ParamSet, owner: str) -> Callable[..., None]:
    """An `__init__` taking exactly `params` (scikit-learn reads its signature for
    get_params, clone and repr) and only storing them, as scikit-learn asks."""
    signature = params.signature()

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{owner}: {exc}") from None
        for name, p in list(signature.parameters.items())[1:]:
            setattr(self, name, bound.arguments.get(name, p.default))

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    __init__.__qualname__ = f"{owner}.__init__"
    __init__.__doc__ = f"Parameters (each declared in featstore.heads.params):\n\n" \
                       f"{params.describe()}"
    return __init__


# -- what each estimator takes -------------------------------------------------------------------
TEXT_HEAD = ParamSet(
    ["pool", "head", "store", "layers", "layer_start", "of", "fuse", "fuse_mode", "normalize",
     "hidden", "dropout", "epochs", "lr", "weight_decay", "batch_size", "patience",
     "label_smoothing", "C", "max_iter", "proj_dim", "valid_fraction", "encoder", "label_col",
     "seed", "seeds"], positional=2)
SEQUENCE_HEAD = ParamSet(
    ["seq_head", "group_by", "order_by", "time_col", "store", "label_col", "pool", "layers", "of",
     "fuse", "normalize", "encoder", "width", "depth", "n_heads", "classifier", "dropout",
     "epochs", "min_steps", "lr", "weight_decay", "batch_size", "patience", "valid_fraction",
     "max_len", "C", "max_iter", "inner_cv", "candidates", "seed"], positional=4,
    # a short fixed schedule on every training sequence: on conversation sets, early stopping
    # on a held-out 15% stopped near epoch 5 on a noisy score and lost to it; the transformer
    # takes at least 160 steps, or on a few hundred sequences (4 minibatches an epoch) it
    # learns order only half-way (the GRU needs no more, and overfits with them; docs/HEADS.md)
    defaults={"pool": None, "dropout": 0.3, "epochs": 10, "min_steps": 160, "lr": 1e-3,
              "weight_decay": 0.05, "batch_size": 64, "patience": 6, "valid_fraction": 0.0,
              "max_iter": 200})
PAIR_HEAD = ParamSet(
    ["head", "pool", "store", "source", "combine", "symmetric", "layers", "layer_start", "of",
     "fuse", "fuse_mode", "normalize", "hidden", "dropout", "epochs", "lr", "weight_decay",
     "batch_size", "patience", "label_smoothing", "C", "max_iter", "proj_dim", "cosent_scale",
     "valid_fraction", "encoder", "label_col", "pair_cols", "seed", "seeds"], positional=2,
    defaults={"head": None})
HEAD_ENSEMBLE = ParamSet(["members", "weights", "store", "label_col", "unit", "seed"],
                         positional=2)
ENSEMBLE_REGRESSOR = ParamSet(["members", "weights", "intercept", "store", "label_col", "unit",
                               "seed"], positional=3)
HEAD_SELECTOR = ParamSet(
    ["store", "task", "budget", "folds", "search_space", "encoder", "fuse", "label_col", "seeds",
     "allow_ensemble", "pair_cols", "seed"], positional=1, defaults={"seeds": 5, "fuse": None})
STORED_VECTORS = ParamSet(["store", "pool", "layers", "of", "encoder"], positional=5)
