"""The names a head is configured with (poolings, heads, fusion, normalisation, tasks).

Plain constants with no heavy imports, so the command line can list them without loading torch.
"""

FIXED_POOLINGS = ("cls", "pooler", "mean", "max", "mean-max", "cls-mean", "concat")
TRAINABLE_POOLINGS = ("weighted", "lstm", "attention")
POOLINGS = FIXED_POOLINGS + TRAINABLE_POOLINGS
# --of: which stored per-layer vectors `concat`, `weighted` and `lstm` work on
OF_CHOICES = ("cls", "mean", "max", "mean-max", "cls-mean")
TORCH_HEADS = ("linear", "mlp")
HEADS = ("logreg",) + TORCH_HEADS
FUSE_MODES = ("concat", "project")
NORMALIZATIONS = ("none", "l2", "standard")
TASKS = ("classification", "regression")

# `compare`'s default grid. max and cls-mean are left out (mean-max covers them) and so is the
# linear head (the MLP dominates it), which keeps a Banking77-sized grid within ten minutes on
# two cores; --pools and --heads bring them back.
COMPARE_POOLS = ("cls", "pooler", "mean", "mean-max", "concat", "weighted", "lstm", "attention")
COMPARE_HEADS = ("logreg", "mlp")
PROBE_C = 1.0  # probe-layers' fixed C: one logistic regression per layer and feature

# sequence heads (fit-head --group-by): the models over a sequence of message vectors; `auto`
# picks among AUTO_CANDIDATES by inner CV, and `compare --group-by` ranks COMPARE_SEQ_HEADS
SEQ_HEADS = ("transformer", "gru", "mean", "last", "mean-last", "auto")
AUTO_CANDIDATES = ("mean", "mean-last", "gru", "transformer")
COMPARE_SEQ_HEADS = ("mean", "last", "mean-last", "gru", "transformer")
