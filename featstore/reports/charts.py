"""PNG charts: the `compare` leaderboard, the `probe-layers` curves and a confusion matrix.

Scores are drawn in the unit the tables print (percent for classification); bars start at 0, and
a line chart whose axis cannot start at 0 without flattening the curves says so with break marks.
A chart never replaces a file silently. matplotlib runs on the Agg backend: no display needed.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _as_shown(metric: str, values: list[float]) -> tuple[list[float], str]:
    """Classification scores as percents (as the tables print them); other metrics as they are."""
    if metric in ("rmse", "pearson", "spearman"):
        return list(values), metric
    return [100 * v for v in values], f"{metric} (%)"


def leaderboard_chart(names: list[str], scores: list[float], metric: str, title: str,
                      path: str | Path) -> Path:
    shown, label = _as_shown(metric, scores)
    height = max(2.5, 0.32 * len(names) + 1.4)
    fig, ax = plt.subplots(figsize=(8, height))
    ypos = list(range(len(names)))[::-1]
    ax.barh(ypos, shown, color="#4878a8")
    ax.set_yticks(ypos, names, fontsize=8)
    top = 100.0 if label.endswith("(%)") else max(shown + [0.0]) * 1.15 or 1.0
    ax.set_xlim(0, top)
    for y, s in zip(ypos, shown, strict=True):
        ax.text(s, y, f" {s:.2f}" if label.endswith("(%)") else f" {s:.3f}", va="center",
                fontsize=7)
    ax.set_xlabel(label)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def layer_chart(rows: list[dict], metric: str, title: str, path: str | Path,
                chance: float | None = None) -> Path:
    """Score by layer, one line per feature, with the chance level (majority-class rate) as a
    dashed line; the y-axis starts where the data does, marked as broken when that is above 0."""
    fig, ax = plt.subplots(figsize=(6.4, 4))
    values = []
    for feat in sorted({r["feature"] for r in rows}):
        pts = [(r["layer"], 100 * r[metric]) for r in rows if r["feature"] == feat]
        values += [p[1] for p in pts]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=feat)
    if chance is not None:
        ax.axhline(100 * chance, color="grey", linestyle="--", linewidth=1,
                   label=f"chance ({100 * chance:.1f})")
        values.append(100 * chance)
    low = max(0.0, min(values) - 0.1 * (max(values) - min(values) + 1)) if values else 0.0
    low = 0.0 if low < 10 else float(10 * np.floor(low / 10))
    ax.set_ylim(low, 100)
    if low > 0:  # a broken axis, said twice: marks on the axis and in its label
        ax.plot([0, 0.02], [0.0, 0.015], transform=ax.transAxes, color="k", clip_on=False)
        ax.plot([0, 0.02], [0.015, 0.03], transform=ax.transAxes, color="k", clip_on=False)
        ax.set_ylabel(f"{metric} (%), axis from {low:.0f}")
    else:
        ax.set_ylabel(f"{metric} (%)")
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def confusion_chart(matrix: np.ndarray, classes: list[str], title: str, path: str | Path
                    ) -> Path:
    """Rows: true label; columns: predicted; cells: share of the true label's rows (%)."""
    n = len(classes)
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    side = min(24.0, max(4.5, 0.28 * n + 2.5))
    fig, ax = plt.subplots(figsize=(side, side))
    im = ax.imshow(100 * share, cmap="Blues", vmin=0, vmax=100)
    fs = 8 if n <= 20 else max(3, int(160 / n))
    ax.set_xticks(range(n), classes, rotation=90, fontsize=fs)
    ax.set_yticks(range(n), classes, fontsize=fs)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="% of the true label's rows")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
