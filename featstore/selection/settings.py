"""The defaults of `compare` and `probe-layers`: plain constants with no heavy imports, so the
command line shows them in its help without loading torch."""

# `compare`'s default grid. max and cls-mean are left out (mean-max covers them) and so is the
# linear head (the MLP dominates it), which keeps a Banking77-sized grid within ten minutes on
# two cores; --pools and --heads bring them back.
COMPARE_POOLS = ("cls", "pooler", "mean", "mean-max", "concat", "weighted", "lstm", "attention")
COMPARE_HEADS = ("logreg", "mlp")
# `compare --group-by`: the sequence heads ranked, the summary baselines first
COMPARE_SEQ_HEADS = ("mean", "last", "mean-last", "mean-max", "gru", "transformer")
PROBE_C = 1.0  # probe-layers' fixed C: one logistic regression per layer and feature
