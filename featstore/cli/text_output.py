"""How commands print for people: aligned tables, sizes, scores."""

from __future__ import annotations

import math


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def score(task: str, value: float | None) -> str:
    """Classification scores as percents, regression scores as plain numbers."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if task == "classification":
        return f"{100 * value:.2f}"
    return f"{value:.4f}"


def metrics_table(task: str, metrics: dict, names: tuple[str, ...], runs: int,
                  header: str = "metric") -> str:
    """One row per metric: its value and, over several runs, its spread."""
    rows = [[m, score(task, metrics[m]),
             f"± {score(task, metrics.get(f'{m}_std', 0.0))}" if runs > 1 else ""]
            for m in names]
    return table([header, "value", ""], rows)
