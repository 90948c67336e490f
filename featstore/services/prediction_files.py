"""Where `predict` writes: the format a file's extension names, an existing file replaced only
with `overwrite` (checked before any work, with no heavy import), and the table written through a
temporary file renamed into place."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import IO, TYPE_CHECKING

from featstore.heads.errors import HeadError
from featstore.store.atomic import can_create_in

if TYPE_CHECKING:
    import pandas as pd


OUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


def output_target(out: str | None, fmt: str | None, overwrite: bool = False
                  ) -> tuple[Path | None, str]:
    """Where predictions go and in which format, checked before any work: the format the file's
    extension names (an unknown extension needs --format, a contradicting --format is refused),
    and an existing file is replaced only with `overwrite`. None: stdout."""
    if out is None:
        if fmt == "parquet":
            raise HeadError("--format parquet writes a file: pass --out FILE.parquet")
        return None, fmt or "csv"
    path = Path(out)
    named = OUT_FORMATS.get(path.suffix.lower())
    if named is None and fmt is None:
        raise HeadError(f"--out {out}: the extension {path.suffix or '(none)'!r} names no "
                        "format; use .csv, .jsonl or .parquet, or pass --format")
    if named is not None and fmt is not None and named != fmt:
        raise HeadError(f"--out {out} names {named} but --format says {fmt}; drop --format or "
                        "change the extension")
    if path.is_dir():
        raise HeadError(f"--out {out} is a directory")
    if os.path.lexists(path) and not overwrite:
        raise HeadError(f"--out {out} already exists; pass --overwrite to replace it, or "
                        "another --out")
    if not path.parent.is_dir():
        raise HeadError(f"--out {out}: directory {path.parent} does not exist")
    if not can_create_in(path.parent):
        raise HeadError(f"--out {out}: cannot create files in {path.parent.absolute()}; "
                        "pass another --out")
    return path, fmt or named or "csv"


def write_predictions(table: pd.DataFrame, path: Path | None, fmt: str, stream: IO) -> None:
    """The table in `fmt` to `stream`, or to `path` through a temporary file renamed into
    place, so a failed write never leaves half a file."""
    if path is None:
        if fmt == "jsonl":
            table.to_json(stream, orient="records", lines=True, force_ascii=False)
        else:
            table.to_csv(stream, index=False)
        return
    from pyarrow import ArrowException

    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if fmt == "parquet":
            table.to_parquet(tmp, index=False)
        elif fmt == "jsonl":
            table.to_json(tmp, orient="records", lines=True, force_ascii=False)
        else:
            table.to_csv(tmp, index=False)
        os.replace(tmp, path)
    except (ValueError, TypeError, ArrowException) as exc:
        raise HeadError(f"--out {path}: the predictions cannot be written as {fmt} ({exc})"
                        ) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
