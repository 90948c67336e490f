"""Corpus readers: stream .csv/.tsv/.parquet/.jsonl in chunks, find the text column, fail clearly.

Every column is kept as read; texts are normalised for keys by the store's rule. CSV and TSV are
read as strings throughout (so a label column never changes type between chunks); Parquet and
JSONL keep their own types.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from featstore.store import FeatstoreError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet",
           ".jsonl": "jsonl", ".ndjson": "jsonl"}
TEXT_COLUMN_GUESSES = ("text", "sentence")


class CorpusError(FeatstoreError):
    """The corpus file cannot be read as asked."""


@dataclass(frozen=True)
class Corpus:
    path: Path
    fmt: str
    text_column: str
    columns: tuple[str, ...]

    def chunks(self, rows: int = 16384) -> Iterator[pd.DataFrame]:
        """DataFrames of at most `rows` rows, in file order."""
        yield from _read_chunks(self.path, self.fmt, rows)


def corpus_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise CorpusError(f"{path}: unsupported corpus format {path.suffix or '(none)'!r}; "
                          "use .csv, .tsv, .parquet or .jsonl")
    return fmt


def open_corpus(path: str | Path, text_col: str | None = None) -> Corpus:
    """Check the file exists, parses, and has a text column; reads only the first chunk."""
    path = Path(path)
    fmt = corpus_format(path)
    if not path.is_file():
        raise CorpusError(f"corpus file {path} does not exist")
    first = next(_read_chunks(path, fmt, 256), None)
    if first is None or len(first.columns) == 0:
        raise CorpusError(f"{path}: corpus is empty (no header or columns)")
    columns = tuple(str(c) for c in first.columns)
    return Corpus(path, fmt, _text_column(path, first, text_col), columns)


def _text_column(path: Path, first: pd.DataFrame, text_col: str | None) -> str:
    cols = [str(c) for c in first.columns]
    listed = ", ".join(cols)
    if text_col is not None:
        if text_col not in cols:
            raise CorpusError(f"{path}: no column {text_col!r} (columns: {listed})")
        return text_col
    for guess in TEXT_COLUMN_GUESSES:
        if guess in cols:
            return guess
    strings = [c for c in cols if first[c].map(lambda v: isinstance(v, str)).any()
               and not pd.to_numeric(first[c], errors="coerce").notna().all()]
    if len(strings) == 1:
        return strings[0]
    raise CorpusError(f"{path}: cannot tell which column holds the text (columns: {listed}); "
                      "pass --text-col")


def _read_chunks(path: Path, fmt: str, rows: int) -> Iterator[pd.DataFrame]:
    try:
        if fmt in ("csv", "tsv"):
            reader = pd.read_csv(path, sep="," if fmt == "csv" else "\t", dtype=str,
                                 keep_default_na=False, na_values=[""], chunksize=rows,
                                 encoding="utf-8")
            with reader:
                yield from reader
        elif fmt == "parquet":
            for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
                yield batch.to_pandas()
        else:
            with pd.read_json(path, lines=True, chunksize=rows, dtype=False,
                              encoding="utf-8") as reader:
                yield from reader
    except UnicodeDecodeError:
        raise CorpusError(f"{path}: {_first_bad_line(path)} is not valid UTF-8") from None
    except pd.errors.EmptyDataError:
        return
    except (pd.errors.ParserError, ValueError, pa.ArrowException, json.JSONDecodeError,
            OSError) as exc:
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise CorpusError(f"{path}: cannot parse as {fmt}: {msg}") from None


def _first_bad_line(path: Path) -> str:
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return f"line {lineno}"
    return "the file"
