"""The kinds a head is built from, one registry each: poolings (`POOLINGS`) and head kinds
(`HEAD_KINDS`), with what each reads and accepts (tasks, units of one example, trained or
fixed). The rules of which kinds go together are written here once; estimators, `compare`'s
grid, the `--auto` candidates and the command line all ask these.

Plain data and small functions with no heavy imports, so the command line lists the kinds
without loading torch or scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

from featstore.heads.errors import ParamError, literal

TASKS = ("classification", "regression")
UNITS = ("text", "sequence", "pair")
FUSE_MODES = ("concat", "project")
NORMALIZATIONS = ("none", "l2", "standard")
# --of: which stored per-layer vectors `concat`, `weighted` and `lstm` work on
OF_CHOICES = ("cls", "mean", "max", "mean-max", "cls-mean")
FEATURES_OF = {"cls": ("cls",), "mean": ("mean",), "max": ("max",), "mean-max": ("mean", "max"),
               "cls-mean": ("cls", "mean"), "pooler": ("pooler",), "tokens": ("tokens",)}
# a pair head: what it reads (each text's vectors, the pair's joint encoding, or both) and how
# two texts' vectors u and v become one row (SentEval's u, v, |u-v|, u*v, and their cosine),
# and how their token states align (`align`: read from `--tokens`)
PAIR_SOURCES = ("bi", "cross", "both")
PAIR_PARTS = ("u", "v", "absdiff", "product", "cosine", "align")
VECTOR_PARTS = PAIR_PARTS[:4]  # the parts that repeat a text's whole vector in the row


@dataclass(frozen=True)
class PoolingKind:
    """How per-layer, per-text rows become one vector. `reads`: the stored rows (a key of
    FEATURES_OF), or None when `--of` says (default `default_of`); `layers`: which layers by
    default (`top`, `top4`, `from-middle`, `from-first`, `every`, or `none` for the pooler,
    which has no layer axis); `trainable`: a torch module trained with the head (else numpy,
    applied while rows are read); `averages_for_logreg`: under logistic regression it becomes
    the plain average of its layers."""

    name: str
    reads: str | None
    layers: str
    trainable: bool
    help: str
    default_of: str | None = None
    averages_for_logreg: bool = False
    fixed_for_sequences: bool = False
    pairs_only: bool = False  # it reads both texts of a pair at once
    averages_token_layers: bool = False  # token states: the mean of its layers, else the last

    def features(self, of: str | None = None) -> list[str]:
        """The stored features read, side by side along the vector axis."""
        return list(FEATURES_OF[self.reads or of or self.default_of or "mean"])

    @property
    def reads_tokens(self) -> bool:
        return self.reads == "tokens"

    @property
    def layered(self) -> bool:
        return self.layers != "none"

    @property
    def takes_of(self) -> bool:
        return self.reads is None

    @property
    def takes_layer_start(self) -> bool:
        return self.layers in ("from-middle", "from-first")


POOLINGS_BY_NAME: dict[str, PoolingKind] = {k.name: k for k in (
    PoolingKind("cls", "cls", "top", False, "the first token's hidden state (never the logits)"),
    PoolingKind("pooler", "pooler", "none", False, "the model's pooler output"),
    PoolingKind("mean", "mean", "top", False, "masked mean over real tokens"),
    PoolingKind("max", "max", "top", False, "masked max over real tokens"),
    PoolingKind("mean-max", "mean-max", "top", False, "mean and max side by side"),
    PoolingKind("cls-mean", "cls-mean", "top", False, "CLS and mean side by side"),
    PoolingKind("concat", None, "top4", False, "the chosen layers joined end to end",
                default_of="mean"),
    PoolingKind("weighted", None, "from-middle", True, "softmax-normalised learned layer "
                "weights", default_of="mean", averages_for_logreg=True,
                fixed_for_sequences=True),
    PoolingKind("lstm", None, "from-first", True, "an LSTM reading the layers bottom to top",
                default_of="cls"),
    PoolingKind("attention", "tokens", "top", True, "learned additive attention over token "
                "states"),
    PoolingKind("soft-align", "tokens", "every", True, "pairs: each token state (the mean of "
                "every layer's) compared with its soft match in the other text (decomposable "
                "attention), then mean and max", pairs_only=True, averages_token_layers=True),
)}
POOLINGS = tuple(POOLINGS_BY_NAME)
FIXED_POOLINGS = tuple(k for k, p in POOLINGS_BY_NAME.items() if not p.trainable)


@dataclass(frozen=True)
class HeadKind:
    """A model over pooled vectors. `unit`: the example it reads (a text, a sequence of texts,
    or only a pair of texts; per-text kinds also read a pair's combined row); `tasks`: what it
    can learn; `trained_by`: `logreg` (scikit-learn on fixed vectors: logistic regression, ridge
    regression, boosted trees, or none for the cosine) or `torch` (trained jointly with any
    trainable pooling and projection); `chooses`: it picks another kind by inner
    cross-validation."""

    name: str
    unit: str
    tasks: tuple[str, ...]
    trained_by: str
    help: str
    chooses: bool = False

    def accepts(self, pooling: PoolingKind) -> bool:
        """Whether this head can be trained on that pooling's vectors."""
        if self.unit == "sequence":  # one fixed vector per message
            return not pooling.trainable or pooling.fixed_for_sequences
        return self.trained_by == "torch" or not pooling.trainable \
            or pooling.averages_for_logreg


HEAD_KINDS: dict[str, HeadKind] = {k.name: k for k in (
    HeadKind("logreg", "text", ("classification",), "logreg",
             "logistic regression, C by inner CV"),
    HeadKind("linear", "text", TASKS, "torch", "dropout and one linear layer"),
    HeadKind("mlp", "text", TASKS, "torch", "one GELU hidden layer with dropout"),
    HeadKind("cosine", "pair", TASKS, "logreg",
             "the cosine of the two texts' vectors: thresholds learned on the training pairs "
             "(classification), rescaled to the targets (regression)"),
    HeadKind("ridge", "pair", ("regression",), "logreg",
             "ridge regression on the pair's row, its strength by inner CV"),
    HeadKind("boosting", "pair", TASKS, "logreg",
             "gradient-boosted trees on the pair's row; for a few dozen features (align, "
             "cosine), not for whole vectors"),
    HeadKind("projection", "pair", TASKS, "torch",
             "a learned projection of each text's vector, scored by cosine, trained with a "
             "similarity (CoSENT) loss"),
    HeadKind("transformer", "sequence", ("classification",), "torch",
             "a small transformer with a learned [CLS]"),
    HeadKind("gru", "sequence", ("classification",), "torch", "a bidirectional GRU"),
    HeadKind("mean", "sequence", ("classification",), "logreg",
             "the mean of the message vectors into logistic regression"),
    HeadKind("last", "sequence", ("classification",), "logreg",
             "the last message into logistic regression"),
    HeadKind("mean-last", "sequence", ("classification",), "logreg",
             "the mean and the last message into logistic regression"),
    HeadKind("mean-max", "sequence", ("classification",), "logreg",
             "the mean and the max of the message vectors into logistic regression"),
    HeadKind("auto", "sequence", ("classification",), "torch",
             "the best of the candidates by inner CV on the training sequences", chooses=True),
)}
HEADS = tuple(k for k, h in HEAD_KINDS.items() if h.unit in ("text", "pair"))
TEXT_HEADS = tuple(k for k, h in HEAD_KINDS.items() if h.unit == "text")
PAIR_HEADS = HEADS  # a pair's combined row takes any per-text head too
SEQ_HEADS = tuple(k for k, h in HEAD_KINDS.items() if h.unit == "sequence")
SEQUENCE_KINDS = tuple(k for k in SEQ_HEADS if not HEAD_KINDS[k].chooses)
# auto's default candidates, simplest first (ties go to the earlier)
SEQUENCE_SEARCHED = ("mean", "last", "mean-last", "mean-max", "gru", "transformer")
SEQUENCE_CLASSIFIERS = ("linear", "mlp")  # what follows a sequence network


def pooling(name: str) -> PoolingKind:
    try:
        return POOLINGS_BY_NAME[name]
    except KeyError:
        raise ParamError(f"unknown pooling {literal(repr(name))}; choose one of: "
                         f"{', '.join(POOLINGS)}") from None


def default_head(pool: str, task: str, fuse_mode: str) -> str:
    """logreg for a fixed pooling with concatenated sources on a classification task, else
    mlp."""
    fixed = not pooling(pool).trainable and fuse_mode == "concat"
    return "logreg" if task == "classification" and fixed else "mlp"


def default_pair_head(pool: str, task: str, fuse_mode: str) -> str:
    """For a pair's row: logreg (classification) or ridge (regression) on fixed poolings with
    concatenated sources, else mlp."""
    fixed = not pooling(pool).trainable and fuse_mode == "concat"
    if not fixed:
        return "mlp"
    return "logreg" if task == "classification" else "ridge"


def pooled_while_read(pool: str, head: str) -> bool:
    """Whether rows reach the head already pooled: fixed poolings, and those that average
    under logistic regression."""
    kind = pooling(pool)
    return not kind.trainable or (kind.averages_for_logreg and
                                  HEAD_KINDS[head].trained_by == "logreg")


def check_combination(pool: str, head: str, task: str = "classification",
                      fuse_mode: str = "concat", unit: str = "text") -> None:
    """Refuse a per-text (or pair) head that cannot take this pooling, task or fusion mode."""
    kind, model = pooling(pool), HEAD_KINDS[head]
    if kind.pairs_only and unit != "pair":
        raise ParamError(f"{{pool=}}{pool} compares the two texts of a pair; fit it on a pair "
                         "dataset (featurize --pair-cols A B --tokens), or use {pool=}attention "
                         "for single texts")
    if model.unit == "pair" and unit != "pair":
        raise ParamError(f"{{head=}}{head} compares the two texts of a pair; fit it on a pair "
                         "dataset (featurize --pair-cols A B)")
    if task not in model.tasks and model.unit == "pair":
        raise ParamError(f"{{head=}}{head} learns {' or '.join(model.tasks)}; use "
                         "{head=}mlp for {task=}" + task)
    if task not in model.tasks:
        raise ParamError(f"{{head=}}{head} is a classifier; use {{head=}}linear or mlp for "
                         f"{{task=}}{task}")
    if not model.accepts(kind):
        raise ParamError(f"{{pool=}}{pool} is trained with the head; use {{head=}}linear or "
                         f"mlp ({head} takes fixed poolings only)")
    if fuse_mode == "project" and model.trained_by != "torch":
        raise ParamError("{fuse_mode=}project is trained with the head; use {head=}linear or "
                         "mlp")


def check_sequence_pooling(pool: str | None) -> None:
    """Sequence heads read one fixed vector per message (None: auto's choice)."""
    if pool is None:
        return
    kind = pooling(pool)
    if kind.pairs_only:
        raise ParamError(f"{{pool=}}{pool} compares the two texts of a pair; sequence heads "
                         "read one fixed vector per message (cls, mean, mean-max, concat...)")
    if kind.trainable and not kind.fixed_for_sequences:
        raise ParamError(f"{{pool=}}{pool} is trained with a per-text head; sequence heads "
                         "read one fixed vector per message (cls, mean, mean-max, concat, "
                         "weighted...)")


def compatible(pool: str, head: str, task: str, fuse_mode: str = "concat",
               unit: str = "text") -> bool:
    """Whether `check_combination` accepts this pooling, head and fusion mode for the task."""
    try:
        check_combination(pool, head, task, fuse_mode, unit)
    except ParamError:
        return False
    return True


def primary_metric(task: str) -> str:
    """The number leaderboards sort by: accuracy, or Spearman for regression."""
    return "spearman" if task == "regression" else "accuracy"
