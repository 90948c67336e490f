"""Corpus readers: stream .csv/.tsv/.parquet/.jsonl in chunks, find the text column, fail clearly.

Every column is kept as read; texts are normalised for keys by the store's rule. CSV and TSV are
read as strings throughout (so a label column never changes type between chunks); Parquet and
JSONL keep their own types. `ChunkChecker` checks every chunk before anything is written, so bad
input fails with its file, row and column while the store is still untouched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from featstore.featurize.errors import CorpusError
from featstore.store import clean_text

FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet",
           ".jsonl": "jsonl", ".ndjson": "jsonl"}
TEXT_COLUMN_GUESSES = ("text", "sentence")


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
    except (ValueError, TypeError) as exc:  # pandas raises TypeError for a JSONL non-object
        if fmt != "jsonl":
            raise CorpusError(f"{path}: cannot parse as {fmt}: {_last_line(exc)}") from None
        raise CorpusError(f"{path}: {_first_bad_json_line(path) or _last_line(exc)}") from None
    except (pa.ArrowException, OSError) as exc:
        raise CorpusError(f"{path}: cannot parse as {fmt}: {_last_line(exc)}") from None


def _last_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__


def _first_bad_json_line(path: Path) -> str | None:
    """Which line of a JSONL file is not a JSON object, for a message that points at it."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                return f"line {lineno} is not valid JSON ({exc.msg} at column {exc.colno})"
            if not isinstance(obj, dict):
                return f"line {lineno} is not a JSON object (found {type(obj).__name__})"
    return None


def _first_bad_line(path: Path) -> str:
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return f"line {lineno}"
    return "the file"


_SCALARS = (str, int, float, bool, np.generic)


def _type_name(value: object) -> str:
    return {str: "text", int: "a number", float: "a number", bool: "a boolean",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


class ChunkChecker:
    """Checks each chunk as the featurize pass will use it, before anything is written: texts
    are scalars and valid Unicode, and every column converts to one Arrow type across the file.
    """

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        self.schema: pa.Schema | None = None

    def check(self, chunk: pd.DataFrame, first_row: int, keep: Sequence[int]) -> None:
        """`first_row`: rows before this chunk; `keep`: positions of rows that have text."""
        path, col = self.corpus.path, self.corpus.text_column
        values = chunk[col].tolist()
        for i in keep:
            v = values[i]
            where = f"{path} row {first_row + i + 1}, column {col!r}"
            if not isinstance(v, _SCALARS):
                raise CorpusError(f"{where}: expected text, found {_type_name(v)}")
            if isinstance(v, str):
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    raise CorpusError(f"{where}: text is not valid Unicode (a lone surrogate "
                                      "escape such as \\ud800)") from None
        rows = chunk.iloc[list(keep)].reset_index(drop=True)
        try:
            table = pa.Table.from_pandas(rows, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise CorpusError(self._mixed(rows, first_row, keep, exc)) from None
        if self.schema is None:
            if table.num_rows:
                self.schema = table.schema
            return
        for field in self.schema:
            got = table.schema.field(field.name).type if field.name in table.schema.names \
                else None
            if got is None:
                raise CorpusError(f"{path} row {first_row + 1}: column {field.name!r} is "
                                  "missing from here on")
            if got != field.type and not pa.types.is_null(got):
                try:
                    table.column(field.name).cast(field.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    raise CorpusError(
                        f"{path} rows {first_row + 1}-{first_row + len(chunk)}, column "
                        f"{field.name!r}: holds {got} where earlier rows hold {field.type}; "
                        "a column must keep one type") from None

    def _mixed(self, rows: pd.DataFrame, first_row: int, keep: Sequence[int],
               exc: BaseException) -> str:
        path = self.corpus.path
        m = re.search(r"column (.+?) with type", str(exc))
        col = m.group(1) if m else None
        if col in rows.columns:
            first_kind = None
            for j, v in enumerate(rows[col].tolist()):
                if v is None or (isinstance(v, float) and np.isnan(v)):
                    continue
                kind = _type_name(v)
                if first_kind is None:
                    first_kind = kind
                elif kind != first_kind:
                    return (f"{path} row {first_row + keep[j] + 1}, column {col!r}: "
                            f"{str(v)[:40]!r} is {kind} where earlier rows hold {first_kind}; "
                            "a column must hold one type")
            return f"{path}, column {col!r}: values cannot be stored ({_last_line(exc)})"
        return f"{path}: a column cannot be stored ({_last_line(exc)})"


def scan_corpus(corpus: Corpus, strict: bool) -> tuple[int, int]:
    """(rows, rows without text) over the whole file: fails before anything is written."""
    rows = skipped = 0
    checker = ChunkChecker(corpus)
    for chunk in corpus.chunks():
        keep = []
        for i, value in enumerate(chunk[corpus.text_column].tolist()):
            if clean_text(value) is None:
                if strict:
                    raise CorpusError(f"{corpus.path} row {rows + i + 1}: empty or missing text "
                                      f"in column {corpus.text_column!r} (--strict)")
                skipped += 1
            else:
                keep.append(i)
        checker.check(chunk, rows, keep)
        rows += len(chunk)
    if rows - skipped == 0:
        what = "has no rows" if rows == 0 else f"has no texts in column {corpus.text_column!r}"
        raise CorpusError(f"{corpus.path}: corpus {what}")
    return rows, skipped
