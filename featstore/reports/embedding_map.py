"""The audit's map: every text's vector projected to 2-D, coloured by its label, with the rows
the audit suspects marked, so a person sees at a glance where labels cluster, which clusters
touch, and where the suspects sit.

Projection: t-SNE (scikit-learn, Barnes-Hut, on the top 50 principal components). On Banking77
a 2-D PCA is one blob in which no class can be told apart (its first two components keep a
small share of the variance), while t-SNE and UMAP both draw one island per intent; t-SNE was
kept because it needs no further dependency (UMAP brings numba and pynndescent) and is
deterministic with a seed. Large datasets are drawn from a seeded sample of at most
`MAX_POINTS` rows that keeps every marked row.

With many labels a colour legend cannot be read, so each label's name is written at the middle
of its points instead; the legend says what the marks mean.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

MAX_POINTS = 20000
LEGEND_LABELS = 12  # up to this many labels get a colour legend; more are named on the map
METHOD = "t-SNE"


def project(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """[n, 2] t-SNE coordinates of unit-length rows (PCA to 50 dimensions first)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    n = len(vectors)
    if n < 4:
        return np.zeros((n, 2)) if n < 2 else PCA(2).fit_transform(vectors)
    dims = min(50, n - 1, vectors.shape[1])
    reduced = PCA(dims, random_state=seed).fit_transform(vectors)
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
    return TSNE(2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(reduced)


def sample_rows(n: int, keep: np.ndarray, seed: int, limit: int = MAX_POINTS) -> np.ndarray:
    """Row positions drawn: all when n <= limit, else every `keep` row plus a seeded sample."""
    if n <= limit:
        return np.arange(n)
    keep = np.unique(keep)
    rest = np.setdiff1d(np.arange(n), keep)
    extra = np.random.default_rng(seed).choice(rest, max(0, limit - len(keep)), replace=False)
    return np.sort(np.concatenate([keep, extra]))


def draw_map(vectors: np.ndarray, labels: np.ndarray, is_eval: np.ndarray,
             suspect: np.ndarray, leaked: np.ndarray, path: str | Path, title: str,
             seed: int = 0) -> str:
    """Draw the map into `path` (PNG, written beside and renamed into place); returns how it
    was projected, in words. `suspect`, `leaked`, `is_eval`: boolean masks over the rows."""
    n = len(vectors)
    marked = np.nonzero(suspect | leaked)[0]
    rows = sample_rows(n, marked, seed)
    xy = project(vectors[rows], seed)
    lab = np.asarray(labels, dtype=object)[rows].astype(str)
    names, codes = np.unique(lab, return_inverse=True)
    colours = _palette(len(names))
    fig, ax = plt.subplots(figsize=(12, 12.5), dpi=110)
    ev = is_eval[rows]
    ax.scatter(xy[~ev, 0], xy[~ev, 1], s=5, c=colours[codes[~ev]], linewidths=0, alpha=0.75,
               rasterized=True)
    if ev.any():
        ax.scatter(xy[ev, 0], xy[ev, 1], s=9, facecolors="none", edgecolors=colours[codes[ev]],
                   linewidths=0.5, alpha=0.9, rasterized=True)
    sus, lk = suspect[rows], leaked[rows]
    ax.scatter(xy[sus, 0], xy[sus, 1], s=30, marker="x", c="black", linewidths=1.1, zorder=4)
    ax.scatter(xy[lk, 0], xy[lk, 1], s=46, marker="^", facecolors="none", edgecolors="red",
               linewidths=1.2, zorder=5)
    if len(names) > LEGEND_LABELS:
        for i, name in enumerate(names):
            pts = xy[codes == i]
            cx, cy = np.median(pts[:, 0]), np.median(pts[:, 1])
            ax.text(cx, cy, name, fontsize=5.5, ha="center", va="center", zorder=6,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": colours[i],
                          "lw": 0.6, "alpha": 0.8})
    handles = [
        Line2D([], [], marker="o", ls="", color="0.45", markersize=5,
               label=f"training text ({int((~ev).sum())}); colour = its label"
                     + ("" if len(names) <= LEGEND_LABELS else
                        f" ({len(names)} labels, named at their centres)")),
        Line2D([], [], marker="x", ls="", color="black", markersize=7, mew=1.3,
               label=f"suspected label error ({int(sus.sum())})"),
    ]
    if ev.any():
        handles.insert(1, Line2D([], [], marker="o", ls="", markerfacecolor="none",
                                 markeredgecolor="0.3", markersize=5,
                                 label=f"evaluation text ({int(ev.sum())})"))
        handles.append(Line2D([], [], marker="^", ls="", markerfacecolor="none",
                              markeredgecolor="red", markersize=8, mew=1.3,
                              label=f"evaluation text with a near-twin in training "
                                    f"({int(lk.sum())})"))
    if len(names) <= LEGEND_LABELS:
        handles += [Line2D([], [], marker="o", ls="", color=colours[i], markersize=6,
                           label=str(name)) for i, name in enumerate(names)]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.05),
              ncol=2 if len(handles) <= 6 else 3, fontsize=9, frameon=False,
              title="what you see", title_fontsize=10)
    shown = "" if len(rows) == n else f"; a sample of {len(rows)} of {n} rows, marked rows all kept"
    ax.set_title(f"{title}\nt-SNE of the vectors: nearby points are similar texts{shown}",
                 fontsize=11)
    ax.set_xlabel("t-SNE dimension 1 (no unit: only distances between nearby points matter)",
                  labelpad=2)
    ax.set_ylabel("t-SNE dimension 2")
    ax.tick_params(labelbottom=False, labelleft=False, length=0)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp.png")
    try:
        fig.savefig(tmp)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return f"{METHOD} of {len(rows)} rows"


def _palette(n: int) -> np.ndarray:
    """n distinguishable colours: tab10/tab20 for few labels, then hues spread around the
    wheel at alternating lightness."""
    if n <= 10:
        return np.array(plt.get_cmap("tab10").colors)[:n]
    if n <= 20:
        return np.array(plt.get_cmap("tab20").colors)[:n]
    import colorsys

    return np.array([colorsys.hls_to_rgb((i * 0.618034) % 1.0, 0.35 + 0.25 * (i % 3) / 2,
                                         0.75) for i in range(n)])
