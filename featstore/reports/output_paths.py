"""Where charts and `--report` files go, checked before a command does any work (before a --train
file is featurized, before any model library loads): a file is never replaced without
`overwrite`, and a directory that does not exist or takes no new files is refused. Light: no
matplotlib."""

from __future__ import annotations

import os
from pathlib import Path

from featstore.heads.errors import HeadError
from featstore.store.atomic import can_create_in


def chart_path(plot: str | os.PathLike | None, charts_dir: str | os.PathLike | None,
               default_name: str, overwrite: bool = False) -> Path:
    """Where a chart goes: `plot`, else CHARTS_DIR/default_name (default: the current
    directory). An existing file, or a directory where no file can be created, is refused
    (unless `overwrite`, for an existing file) before any work is done."""
    path = Path(plot) if plot else Path(charts_dir or ".") / default_name
    if path.suffix.lower() != ".png":
        raise HeadError(f"chart {path}: charts are PNG files; give a name ending in .png")
    if path.is_dir():
        raise HeadError(f"chart {path} is a directory")
    if os.path.lexists(path) and not overwrite:
        raise HeadError(f"chart {path} already exists; pass --overwrite, or --plot/--charts "
                        "elsewhere")
    check_chart_dir(plot, charts_dir)
    return path


def check_chart_dir(plot: str | os.PathLike | None, charts_dir: str | os.PathLike | None
                    ) -> None:
    """The directory a chart goes to exists and takes new files: checked before a command
    does any work (a --train file is featurized before the chart's name is known)."""
    parent = Path(plot).parent if plot else Path(charts_dir or ".")
    if not parent.is_dir():
        raise HeadError(f"chart directory {parent} does not exist")
    if not can_create_in(parent):
        raise HeadError(f"cannot create a chart in {parent.absolute()}; pass --plot or --charts "
                        "elsewhere")


REPORT_FILES = ("classes.csv", "confusion.png", "confused_pairs.csv", "errors.csv")


def report_paths(directory: str | Path, overwrite: bool = False) -> dict[str, Path]:
    """The files `--report DIR` writes; existing ones are refused unless `overwrite`, and a
    directory that cannot be written is refused, both before any training."""
    base = Path(directory)
    if base.exists() and not base.is_dir():
        raise HeadError(f"--report {base}: not a directory")
    paths = {Path(f).stem: base / f for f in REPORT_FILES}
    taken = [str(p) for p in paths.values() if p.exists()]
    if taken and not overwrite:
        raise HeadError(f"--report would replace {', '.join(taken)}; pass --overwrite or "
                        "another directory")
    if not can_create_in(base):
        raise HeadError(f"--report {base}: cannot create files there; pass another directory")
    return paths


