"""`probe-layers`: a logistic regression per stored layer on its CLS and mean vectors, the
"what each layer knows" picture. A fixed C keeps it to one fit per layer and feature."""

from __future__ import annotations

from typing import Any

from featstore.heads.fusion_sources import encoder_layers
from featstore.heads.protocols import EvaluationPlan, run_protocol
from featstore.selection.settings import PROBE_C
from featstore.store import Store

PROBE_FEATURES = ("cls", "mean")


def probe_layers(store: Store, plan: EvaluationPlan, encoder: str | None = None,
                 features: tuple[str, ...] = PROBE_FEATURES, c: float = PROBE_C,
                 seed: int = 0, normalize: str = "standard",
                 progress: Any = None) -> list[dict[str, Any]]:
    """Rows {layer, feature, metrics..., train_seconds}, bottom layer first."""
    enc = store.resolve_encoder(encoder, kind="encoder")
    rows = []
    for layer in encoder_layers(store, enc):
        for feat in features:
            params = {"pool": feat, "layers": [layer], "head": "logreg", "C": c,
                      "encoder": enc, "normalize": normalize}
            r = run_protocol(store, plan, params, seed=seed, refit=False)
            rows.append({"layer": layer, "feature": feat, **r.metrics,
                         "train_seconds": round(r.train_seconds, 3)})
            if progress is not None:
                progress.update(1)
    return rows


def chance_rate(plan: EvaluationPlan) -> float:
    """The accuracy of always predicting the most frequent label of the evaluation examples
    (the training examples under cross-validation; a sequence is one example): the floor a
    head must clear to mean anything."""
    examples = plan.training_examples() if plan.eval is None else \
        plan.unit.examples(plan.eval, plan.label_col, "the evaluation rows")
    counts = examples.labels.astype(str).value_counts()
    return float(counts.iloc[0] / counts.sum()) if len(counts) else 0.0
