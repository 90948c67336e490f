"""PNG charts: the `compare` leaderboard, the `probe-layers` curves and a confusion matrix.

Scores are drawn in the unit the tables print (percent for classification). An axis starts at 0
unless that would flatten the differences a reader came for; then it starts where the data does
and says so twice, with break marks on the axis and "axis from N" in its label. Leaderboard bars
carry error bars (the spread over runs, or the standard error of the evaluation rows), and a
chance line where one is known. Every title names the dataset, the encoder and the protocol
(callers pass it). Where to write is checked beforehand (`output_paths`). matplotlib runs on the
Agg backend: no display needed.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from featstore.store import Store, short_model_name  # noqa: E402


def chart_title(store: Store, dataset: str, what: str, encoder_id: str, protocol: str) -> str:
    """What every chart's title says: the dataset, what is drawn, the encoder (its model's
    short name and id) and the protocol."""
    model = store.encoder_entry(encoder_id).fingerprint.get("model")
    return f"{dataset} · {what}\nencoder {short_model_name(model)} ({encoder_id})\n{protocol}"


def _as_shown(metric: str, values: list[float]) -> tuple[list[float], str]:
    """Classification scores as percents (as the tables print them); other metrics as they are."""
    if metric in ("rmse", "pearson", "spearman"):
        return list(values), metric
    return [100 * v for v in values], f"{metric} (%)"


def axis_start(values: list[float], top: float) -> float:
    """Where a percent axis starts: 0, unless every value lies in the top 40% of the range,
    within a quarter of it of each other (a leaderboard of 87-91% bars that would look the
    same); then a multiple of 5 a little below them."""
    if not values:
        return 0.0
    low, high = min(values), max(values)
    if low < 0.6 * top or high - low > 0.25 * top:
        return 0.0
    start = float(5 * np.floor((low - max(2.0, 0.5 * (high - low))) / 5))
    return max(0.0, start)


def mark_broken(ax: plt.Axes, axis: str) -> None:
    """The two break marks at the start of an axis that does not start at 0."""
    if axis == "x":
        pts = ([0.0, 0.015], [0.0, 0.02]), ([0.015, 0.03], [0.0, 0.02])
    else:
        pts = ([0.0, 0.02], [0.0, 0.015]), ([0.0, 0.02], [0.015, 0.03])
    for xs, ys in pts:
        ax.plot(xs, ys, transform=ax.transAxes, color="k", clip_on=False, linewidth=1.2)


def leaderboard_chart(names: list[str], scores: list[float], metric: str, title: str,
                      path: str | Path, errors: list[float] | None = None,
                      spread: str = "", chance: float | None = None) -> Path:
    """Horizontal bars, best first, each with its error bar (`errors`, in the scores' unit;
    `spread` says what they are) and the chance rate as a dashed line when given. The score
    axis starts at 0 unless the bars would all look the same; then it is marked broken."""
    shown, label = _as_shown(metric, scores)
    percent = label.endswith("(%)")
    err = _as_shown(metric, errors)[0] if errors is not None else [0.0] * len(shown)
    height = max(3.0, 0.34 * len(names) + 2.0)
    width = 6.0 + 0.065 * max((len(n) for n in names), default=10)
    fig, ax = plt.subplots(figsize=(max(8.5, width), height))
    ypos = list(range(len(names)))[::-1]
    ax.barh(ypos, shown, color="#4878a8", xerr=err if errors is not None else None,
            error_kw={"ecolor": "#222222", "capsize": 3, "elinewidth": 1})
    ax.set_yticks(ypos, names, fontsize=8)
    highest = max([s + e for s, e in zip(shown, err, strict=True)] + [0.0])
    top = 100.0 if percent else highest * 1.15 or 1.0
    low = axis_start([s - e for s, e in zip(shown, err, strict=True)], top) if percent else 0.0
    if low > 0:  # a zoomed axis ends near the data too, so the differences fill the width
        top = min(100.0, float(5 * np.ceil((highest + 3) / 5)))
    chance_shown = 100 * chance if chance is not None and percent else chance
    if chance_shown is not None and chance_shown >= low:
        ax.axvline(chance_shown, color="grey", linestyle="--", linewidth=1,
                   label=f"chance ({chance_shown:.1f}: the most frequent label)")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xlim(low, top)
    for y, s_, e in zip(ypos, shown, err, strict=True):
        ax.text(min(s_ + e, top), y, f" {s_:.2f}" if percent else f" {s_:.3f}", va="center",
                fontsize=7)
    notes = []
    if low > 0:
        mark_broken(ax, "x")
        label = f"{label}, axis from {low:.0f}"
    if chance_shown is not None and chance_shown < low:
        notes.append(f"chance {chance_shown:.1f} (the most frequent label) is off the axis")
    if errors is not None and spread:
        notes.append(f"error bars: {spread}")
    lines = [wrapped for note in notes for wrapped in textwrap.wrap(note, 80)]
    ax.set_xlabel("\n".join([label, *lines]), fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
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
        mark_broken(ax, "y")
        ax.set_ylabel(f"{metric} (%), axis from {low:.0f}")
    else:
        ax.set_ylabel(f"{metric} (%)")
    layers = sorted({r["layer"] for r in rows})
    ax.set_xticks(layers if len(layers) <= 25 else layers[::max(1, len(layers) // 12)])
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


# above this many classes the picture shows only the most confused ones, readably
CONFUSION_CLASSES_SHOWN = 25


def most_confused(matrix: np.ndarray, k: int = CONFUSION_CLASSES_SHOWN) -> np.ndarray:
    """Indices of the `k` classes with the most misclassified rows, as gold or as prediction
    (ties: the class order), in class order."""
    off = matrix - np.diag(np.diag(matrix))
    involved = off.sum(axis=0) + off.sum(axis=1)
    order = np.argsort(-involved, kind="stable")[:k]
    return np.sort(order)


def confusion_chart(matrix: np.ndarray, classes: list[str], title: str, path: str | Path
                    ) -> Path:
    """Rows: true label; columns: predicted; cells: share of the true label's rows (%), with
    counts written in. With more than CONFUSION_CLASSES_SHOWN classes only the classes most
    often confused are drawn (shares still of all their rows), and the title says so."""
    n = len(classes)
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    keep = np.arange(n) if n <= CONFUSION_CLASSES_SHOWN else most_confused(matrix)
    if len(keep) < n:
        title = f"{title}\nthe {len(keep)} of {n} classes most often confused"
    sub, sub_share = matrix[np.ix_(keep, keep)], share[np.ix_(keep, keep)]
    names = [classes[i] for i in keep]
    m = len(keep)
    side = max(4.5, 0.36 * m + 3.0)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    im = ax.imshow(100 * sub_share, cmap="Blues", vmin=0, vmax=100)
    ax.set_xticks(range(m), names, rotation=90, fontsize=8)
    ax.set_yticks(range(m), names, fontsize=8)
    for i in range(m):
        for j in range(m):
            if sub[i, j]:
                ax.text(j, i, str(int(sub[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if sub_share[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="% of the true label's rows")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
