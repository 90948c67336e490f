"""PNG charts for `compare` (a leaderboard bar chart) and `probe-layers` (score by layer).
matplotlib runs on the Agg backend: no display is needed."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def leaderboard_chart(names: list[str], scores: list[float], metric: str, title: str,
                      path: str | Path) -> Path:
    height = max(2.5, 0.32 * len(names) + 1.2)
    fig, ax = plt.subplots(figsize=(8, height))
    ypos = range(len(names))[::-1]
    ax.barh(list(ypos), scores, color="#4878a8")
    ax.set_yticks(list(ypos), names, fontsize=8)
    lo = min(scores) if scores else 0
    ax.set_xlim(max(0.0, lo - 0.1 * (1 - lo) - 0.02), 1.0 if metric != "rmse" else None)
    for y, s in zip(ypos, scores, strict=True):
        ax.text(s, y, f" {100 * s:.2f}" if metric != "rmse" else f" {s:.3f}", va="center",
                fontsize=7)
    ax.set_xlabel(metric)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def layer_chart(rows: list[dict], metric: str, title: str, path: str | Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for feat in sorted({r["feature"] for r in rows}):
        pts = [(r["layer"], r[metric]) for r in rows if r["feature"] == feat]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=feat)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
