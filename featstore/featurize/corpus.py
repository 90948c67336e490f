"""Corpus readers: stream .csv/.tsv/.parquet/.jsonl in chunks, find the text column, fail clearly.

Every column is kept; texts are normalised for keys by the store's rule. `scan_corpus` reads the
whole file once before anything is written and settles one Arrow type per column under one rule,
wherever in the file a value falls:

- CSV and TSV cells are text (a label column never changes type); Parquet keeps its own schema.
- JSONL: a key may appear or vanish on any line (missing values are null); a column's values are
  all text, all booleans, all numbers (integers, or floats once any value is a float), or all
  lists/objects (stored as their JSON text). Any other mix stops at the first row that breaks it.
- The text column holds scalars; text with a lone surrogate escape (`"\\ud800"`) is refused.
- A pair corpus (`--pair-cols A B`) has two text columns: every row needs text in both (a row
  with an empty side is refused, not skipped: half a pair is no example), and a column of
  numbers or booleans is no text column.

Bad input fails with its file, row and column while the store is still untouched.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from featstore.featurize.errors import CorpusError
from featstore.store import KEY_COLUMN, PAIR_KEY_COLUMNS, clean_text

FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet",
           ".jsonl": "jsonl", ".ndjson": "jsonl"}
TEXT_COLUMN_GUESSES = ("text", "sentence")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


@dataclass(frozen=True)
class Corpus:
    path: Path
    fmt: str
    text_column: str
    columns: tuple[str, ...]
    pair_columns: tuple[str, str] | None = None  # a pair corpus: its two text columns, in order

    @property
    def text_columns(self) -> tuple[str, ...]:
        """The columns holding texts to encode: the text column, or a pair's two."""
        return self.pair_columns or (self.text_column,)

    def chunks(self, rows: int = 16384) -> Iterator[pd.DataFrame]:
        """DataFrames of at most `rows` rows, in file order."""
        yield from _read_chunks(self.path, self.fmt, rows)


def corpus_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise CorpusError(f"{path}: unsupported corpus format {path.suffix or '(none)'!r}; "
                          "use .csv, .tsv, .parquet or .jsonl")
    return fmt


def open_corpus(path: str | Path, text_col: str | None = None,
                pair_cols: Sequence[str] | None = None) -> Corpus:
    """Check the file exists, parses, and has a text column (or, with `pair_cols`, the two
    columns of a pair); reads only the first chunk."""
    path = Path(path)
    fmt = corpus_format(path)
    if not path.is_file():
        raise CorpusError(f"corpus file {path} does not exist")
    first = next(_read_chunks(path, fmt, 256), None)
    if first is None or len(first.columns) == 0:
        raise CorpusError(f"{path}: corpus is empty (no header or columns)")
    columns = tuple(str(c) for c in first.columns)
    if pair_cols is not None:
        a, b = _pair_columns(path, columns, pair_cols)
        return Corpus(path, fmt, a, columns, (a, b))
    return Corpus(path, fmt, _text_column(path, first, text_col), columns)


def _pair_columns(path: Path, columns: tuple[str, ...], pair_cols: Sequence[str]
                  ) -> tuple[str, str]:
    if len(pair_cols) != 2:
        raise CorpusError(f"--pair-cols names two columns, got {len(pair_cols)}")
    a, b = (str(c) for c in pair_cols)
    if a == b:
        raise CorpusError(f"--pair-cols names column {a!r} twice; a pair is two columns")
    for col in (a, b):
        if col not in columns:
            raise CorpusError(f"{path}: no column {col!r} (columns: {', '.join(columns)})")
        if col in (KEY_COLUMN, *PAIR_KEY_COLUMNS):
            raise CorpusError(f"{path}: column {col!r} is a name featstore gives keys; rename it")
    return a, b


def read_rows(path: str | Path, fmt: str | None = None) -> pd.DataFrame:
    """A whole (small) table file read by the corpus rule: CSV/TSV cells as text, Parquet with
    its schema, JSONL values as parsed. Side files (labels by group, rows to predict) are read
    this way so their values have the types a dataset made from the same file has."""
    path = Path(path)
    chunks = list(_read_chunks(path, fmt or corpus_format(path), 65536))
    return pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()


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
            yield from _jsonl_chunks(path, rows)
    except UnicodeDecodeError:
        raise CorpusError(f"{path}: {_first_bad_line(path)} is not valid UTF-8") from None
    except pd.errors.EmptyDataError:
        return
    except (ValueError, TypeError) as exc:
        raise CorpusError(f"{path}: cannot parse as {fmt}: {_last_line(exc)}") from None
    except (pa.ArrowException, OSError) as exc:
        raise CorpusError(f"{path}: cannot parse as {fmt}: {_last_line(exc)}") from None


def _jsonl_chunks(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    """One JSON object per line, read with Python's own JSON parser (which keeps a lone
    surrogate escape visible, so it can be refused), values kept as Python objects."""
    records: list[dict] = []
    row = 0
    with open(path, encoding="utf-8-sig") as fh:  # a byte order mark is not part of line 1
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{path}: line {lineno} is not valid JSON ({exc.msg} at "
                                  f"column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise CorpusError(f"{path}: line {lineno} is not a JSON object (found "
                                  f"{type(obj).__name__})")
            row += 1
            if _SURROGATE_ESCAPE.search(line):
                _refuse_surrogates(path, row, obj)
            records.append(obj)
            if len(records) == rows:
                yield _frame(records)
                records = []
    if records:
        yield _frame(records)


def _refuse_surrogates(path: Path, row: int, obj: dict) -> None:
    for key, value in obj.items():
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise CorpusError(f"{path} row {row}, column {key!r}: text is not valid Unicode (a "
                              "lone surrogate escape such as \\ud800)") from None


def _frame(records: list[dict]) -> pd.DataFrame:
    columns: dict[str, None] = {}
    for r in records:
        columns.update(dict.fromkeys(r))
    return pd.DataFrame({c: pd.Series([r.get(c) for r in records], dtype=object)
                         for c in columns})


def _last_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__


def _first_bad_line(path: Path) -> str:
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return f"line {lineno}"
    return "the file"


_SCALARS = (str, int, float, bool, np.generic)
_KIND_NAMES = {"text": "text", "int": "a number", "float": "a number", "bool": "a boolean",
               "json": "a list or object"}
_ARROW = {"text": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
          "json": pa.string(), "null": pa.string()}


def _kind(value: object) -> str | None:
    """The typing rule's name for a JSONL value; None for a missing one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool | np.bool_):
        return "bool"
    if isinstance(value, int | np.integer):
        return "int"
    if isinstance(value, float | np.floating):
        return "float"
    if isinstance(value, str):
        return "text"
    return "json"


def _type_name(value: object) -> str:
    return _KIND_NAMES.get(_kind(value) or "", type(value).__name__)


@dataclass
class CorpusScan:
    """What a scan of the whole file settled: row counts and one Arrow type per column."""

    rows: int
    skipped: int
    schema: pa.Schema
    json_columns: list[str] = field(default_factory=list)
    key_columns: tuple[str, ...] = (KEY_COLUMN,)  # a pair's table adds its texts' keys

    def table(self, rows: pd.DataFrame) -> pa.Table:
        """A chunk's rows (the key columns first) as the dataset table stores them."""
        rows = rows.copy()
        for name in self.schema.names:
            if name not in rows.columns:
                rows[name] = None
        for name in self.json_columns:
            rows[name] = [None if _kind(v) is None else json.dumps(v, ensure_ascii=False)
                          for v in rows[name].tolist()]
        schema = pa.schema([*(pa.field(k, pa.string()) for k in self.key_columns),
                            *self.schema])
        try:
            return pa.Table.from_pandas(rows[[*self.key_columns, *self.schema.names]],
                                        schema=schema, preserve_index=False)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise CorpusError(f"a column cannot be stored ({_last_line(exc)})") from None


class _ColumnKinds:
    """The typing rule for JSONL, applied value by value across the whole file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.kinds: dict[str, str] = {}  # column -> kind so far ("null" until a value shows)

    def observe(self, chunk: pd.DataFrame, first_row: int, keep: Sequence[int]) -> None:
        for col in chunk.columns:
            kind = self.kinds.setdefault(str(col), "null")
            values = chunk[col].tolist()
            for i in keep:
                k = _kind(values[i])
                if k is None or k == kind:
                    continue
                if kind == "null" or {kind, k} == {"int", "float"}:
                    kind = "float" if kind in ("int", "float") and k != kind else k
                    continue
                raise CorpusError(
                    f"{self.path} row {first_row + i + 1}, column {col!r}: "
                    f"{str(values[i])[:40]!r} is {_KIND_NAMES[k]} where earlier rows hold "
                    f"{_KIND_NAMES[kind]}; a column must hold one type")
            self.kinds[str(col)] = kind

    def schema(self) -> tuple[pa.Schema, list[str]]:
        return (pa.schema([pa.field(c, _ARROW[k]) for c, k in self.kinds.items()]),
                [c for c, k in self.kinds.items() if k == "json"])


def _check_texts(corpus: Corpus, chunk: pd.DataFrame, first_row: int,
                 keep: Sequence[int]) -> None:
    values = chunk[corpus.text_column].tolist()
    for i in keep:
        v = values[i]
        where = f"{corpus.path} row {first_row + i + 1}, column {corpus.text_column!r}"
        if not isinstance(v, _SCALARS):
            raise CorpusError(f"{where}: expected text, found {_type_name(v)}")
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise CorpusError(f"{where}: text is not valid Unicode (a lone surrogate escape "
                                  "such as \\ud800)") from None


def _check_pair_texts(corpus: Corpus, chunk: pd.DataFrame, first_row: int,
                      numeric: dict[str, bool]) -> None:
    """Both sides of every row are text; `numeric` keeps, per column, whether every value so
    far spelled a number."""
    for col in corpus.text_columns:
        values = chunk[col].tolist() if col in chunk.columns else [None] * len(chunk)
        for i, v in enumerate(values):
            where = f"{corpus.path} row {first_row + i + 1}, column {col!r}"
            kind = _kind(v)
            if kind not in (None, "text"):
                raise CorpusError(f"{where}: expected text, found {_type_name(v)}; --pair-cols "
                                  "names the two text columns")
            if clean_text(v) is None:
                raise CorpusError(f"{where}: empty or missing text; a pair needs both of its "
                                  "texts (fill the row or drop it)")
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise CorpusError(f"{where}: text is not valid Unicode (a lone surrogate escape "
                                  "such as \\ud800)") from None
        if numeric[col]:
            numeric[col] = bool(pd.to_numeric(pd.Series(values, dtype=object),
                                              errors="coerce").notna().all())


def scan_corpus(corpus: Corpus, strict: bool) -> CorpusScan:
    """Read the whole file once: rows, rows without text, and the table's schema. Fails, naming
    file, row and column, before anything is written."""
    rows = skipped = 0
    kinds = _ColumnKinds(corpus.path) if corpus.fmt == "jsonl" else None
    columns: dict[str, None] = {}
    numeric = dict.fromkeys(corpus.text_columns, True)
    for chunk in corpus.chunks():
        if corpus.pair_columns is not None:
            _check_pair_texts(corpus, chunk, rows, numeric)
            if kinds is not None:
                kinds.observe(chunk, rows, range(len(chunk)))
            columns.update(dict.fromkeys(str(c) for c in chunk.columns))
            rows += len(chunk)
            continue
        keep = []
        for i, value in enumerate(chunk[corpus.text_column].tolist()
                                  if corpus.text_column in chunk.columns else [None] * len(chunk)):
            if _kind(value) == "json":
                keep.append(i)  # refused below, with its row
            elif clean_text(value) is None:
                if strict:
                    raise CorpusError(f"{corpus.path} row {rows + i + 1}: empty or missing text "
                                      f"in column {corpus.text_column!r} (--strict)")
                skipped += 1
            else:
                keep.append(i)
        if corpus.text_column in chunk.columns:
            _check_texts(corpus, chunk, rows, keep)
        if kinds is not None:
            kinds.observe(chunk, rows, keep)
        columns.update(dict.fromkeys(str(c) for c in chunk.columns))
        rows += len(chunk)
    if rows - skipped == 0:
        what = "has no rows" if rows == 0 else f"has no texts in column {corpus.text_column!r}"
        raise CorpusError(f"{corpus.path}: corpus {what}")
    for col in corpus.pair_columns or ():
        if numeric[col]:
            raise CorpusError(f"{corpus.path}: column {col!r} holds numbers, not texts; "
                              "--pair-cols names the two text columns")
    if kinds is not None:
        schema, json_columns = kinds.schema()
    elif corpus.fmt == "parquet":
        schema, json_columns = _parquet_schema(corpus.path), []
    else:
        schema, json_columns = pa.schema([pa.field(c, pa.string()) for c in columns]), []
    keys = (KEY_COLUMN, *PAIR_KEY_COLUMNS) if corpus.pair_columns else (KEY_COLUMN,)
    return CorpusScan(rows, skipped, schema, json_columns, keys)


def _parquet_schema(path: Path) -> pa.Schema:
    try:
        schema = pq.ParquetFile(path).schema_arrow
    except (pa.ArrowException, OSError) as exc:
        raise CorpusError(f"{path}: cannot parse as parquet: {_last_line(exc)}") from None
    return pa.schema([f for f in schema if f.name not in (KEY_COLUMN, *PAIR_KEY_COLUMNS)])
