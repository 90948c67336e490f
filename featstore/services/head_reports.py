"""`--report DIR`: the evaluation rows' per-class scores, confusion matrix, most confused pairs
and misclassified rows (with the gold label's probability and the margin) of a run made with
`keep_predictions`, written as files a person opens."""

from __future__ import annotations

from pathlib import Path

from featstore.heads.errors import HeadError
from featstore.reports.charts import chart_title, confusion_chart
from featstore.reports.class_report import ClassReport, class_report
from featstore.reports.output_paths import report_paths
from featstore.services.head_runs import SavedHead
from featstore.store import KEY_COLUMN, Store


def write_report(store: Store, saved: SavedHead, directory: str | Path,
                 overwrite: bool = False) -> tuple[ClassReport, dict[str, Path]]:
    """Per-class scores, a confusion matrix PNG and the misclassified rows of the evaluation
    rows (every fold or repeat pooled), from a run made with `keep_predictions`."""
    result = saved.result
    if result.predictions is None:
        raise HeadError("a report needs a classification run made with keep_predictions")
    paths = report_paths(directory, overwrite)
    Path(directory).mkdir(parents=True, exist_ok=True)
    plan = result.plan
    texts: dict[str, str] | None = {}
    for name, rows in ((plan.train_name, plan.train), (plan.eval_name, plan.eval)):
        if plan.unit.name == "pair":  # the predictions carry both texts already
            texts = None
            break
        entry = store.manifest.datasets.get(str(name).split(":")[0]) if name else None
        if rows is not None and entry is not None and entry.text_column in rows.columns and \
                texts is not None:
            texts.update(zip(rows[KEY_COLUMN], rows[entry.text_column].astype(str),
                             strict=True))
    report = class_report(result.predictions, texts)
    report.per_class.round(4).to_csv(paths["classes"], index=False)
    report.pairs.round(4).to_csv(paths["confused_pairs"], index=False)
    report.errors.to_csv(paths["errors"], index=False)
    confusion_chart(report.matrix, report.classes,
                    chart_title(store, plan.train_name, f"head {saved.name}",
                                result.head.encoder_id_,  # type: ignore[attr-defined]
                                plan.protocol), paths["confusion"])
    return report, paths
