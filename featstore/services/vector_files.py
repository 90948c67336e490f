"""Reading a file of vectors made elsewhere (LASER's own tools, any embedding or numeric
features) into keys and one float matrix, checking the whole file before anything is written.

Accepted layouts, one row per text:

- .parquet, .csv, .tsv: a text column (`--text-col`; default `text`, `sentence`, else a `_key` or
  `key` column of 32-hex store keys, else the only string column) and the vectors as one
  list<number> column (Parquet) or as numeric columns named PREFIX0, PREFIX1, ... (the prefix
  with the most such columns, or `--vector-cols PREFIX`; `--vector-cols '*'` takes every numeric
  column other than the text column).
- .npy (a 2-D numeric array) or .raw/.bin (LASER's raw output: float32, or float16 with
  `--fp16` as LASER's own `--fp16` writes it; 1024 wide unless `--dim`) with `--texts FILE`, one
  text per line, row i of the vectors belonging to line i.
- .npz with arrays `vectors` and `texts` (or `keys`).

Every problem (a missing column, a ragged or null list, NaN or infinity, a width other than
`--dim`, one text given two different vectors, a malformed key) is one line naming the file, row
and column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featstore.store import FeatstoreError, clean_text, text_key
from featstore.store.hashing import sha256_file

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv",
           ".npy": "npy", ".npz": "npz", ".raw": "raw", ".bin": "raw"}
TEXT_GUESSES = ("text", "sentence")
KEY_GUESSES = ("_key", "key")
ALL_NUMERIC = "*"
LASER_DIM = 1024  # the width of LASER's vectors: what a raw file holds unless --dim says
_KEY_RE = re.compile(r"[0-9a-f]{32}")
_NUMBERED = re.compile(r"^(.*?)(\d+)$")


class VectorFileError(FeatstoreError):
    """A vectors file cannot be read as asked, or holds values that cannot be stored."""


@dataclass
class VectorFile:
    """A whole vectors file, checked: one row per distinct key, in file order."""

    path: Path
    fmt: str
    sha256: str
    texts_sha256: str | None  # the --texts file's, for .npy and .raw
    by: str  # "text" or "key": how rows name their texts
    column: str  # the text or key column (or array, or --texts file)
    vectors_from: str  # which columns or array hold the vectors
    keys: list[str]
    vectors: np.ndarray  # [len(keys), dim], float32 or float64 as read
    file_rows: list[int]  # each key's row in the file (0-based), for messages
    rows_read: int
    skipped: int  # rows without a text
    duplicates: int  # rows repeating an earlier text with the same vector

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def read_vector_file(path: str | Path, *, text_col: str | None = None,
                     vector_cols: str | None = None, texts: str | Path | None = None,
                     dim: int | None = None, strict: bool = False,
                     fp16: bool = False) -> VectorFile:
    """Read and check `path` whole; see the module docstring for what is accepted. `fp16`:
    a .raw/.bin file holds float16 values (LASER's `--fp16`), not float32."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise VectorFileError(f"{path}: unsupported vectors format {path.suffix or '(none)'!r}; "
                              "use .parquet, .csv, .tsv, .npy, .npz, or .raw/.bin with --texts")
    if not path.is_file():
        raise VectorFileError(f"vectors file {path} does not exist")
    arrays = fmt in ("npy", "npz", "raw")
    if arrays and (text_col is not None or vector_cols is not None):
        raise VectorFileError(f"{path}: --text-col and --vector-cols are for tables "
                              "(.parquet, .csv, .tsv), not .{fmt} arrays")
    if fmt in ("npy", "raw") and texts is None:
        raise VectorFileError(f"{path}: a .{path.suffix.lower()[1:]} file holds only vectors; "
                              "pass --texts FILE with one text per line, in the same order")
    if fp16 and fmt != "raw":
        raise VectorFileError(f"{path}: --fp16 says how a .raw/.bin file stores its values; a "
                              f".{fmt} file says so itself")
    if fmt not in ("npy", "raw") and texts is not None:
        raise VectorFileError(f"{path}: --texts is for .npy and .raw/.bin files; a .{fmt} file "
                              "names its texts itself")
    texts_sha = None
    if fmt in ("parquet", "csv", "tsv"):
        cols = _read_table(path, fmt, text_col)
        by, column, names = _name_column(path, cols, text_col)
        vectors_from, matrix = _vector_columns(path, cols, column, vector_cols)
    elif fmt == "npz":
        by, column, names, vectors_from, matrix = _read_npz(path)
    elif texts is None:
        raise VectorFileError(f"{path}: a .{path.suffix.lower()[1:]} file holds only vectors; "
                              "pass --texts FILE with one text per line, in the same order")
    else:
        lines = _read_lines(Path(texts))
        texts_sha = sha256_file(texts)
        matrix = (_read_npy(path) if fmt == "npy"
                  else _read_raw(path, len(lines), Path(texts), dim, fp16))
        if matrix.shape[0] != len(lines):
            raise VectorFileError(f"{path} holds {matrix.shape[0]} vectors but {texts} has "
                                  f"{len(lines)} lines; they must pair up one to one")
        by, column, names, vectors_from = "text", "texts", lines, "array"
    if matrix.shape[0] == 0:
        raise VectorFileError(f"{path}: no rows")
    if matrix.shape[1] == 0:
        raise VectorFileError(f"{path}: the vectors have no components")
    if dim is not None and matrix.shape[1] != dim:
        raise VectorFileError(f"{path}: vectors have {matrix.shape[1]} components, --dim says "
                              f"{dim}")
    _check_finite(path, matrix, vectors_from)
    keys, rows, skipped = _keys(path, names, by, column, strict)
    unique, dup = _distinct(path, keys, rows, matrix, by)
    return VectorFile(path=path, fmt=fmt, sha256=sha256_file(path), texts_sha256=texts_sha,
                      by=by, column=column, vectors_from=vectors_from,
                      keys=[keys[i] for i in unique], vectors=matrix[[rows[i] for i in unique]],
                      file_rows=[rows[i] for i in unique], rows_read=len(names),
                      skipped=skipped, duplicates=dup)


# -- tables -----------------------------------------------------------------------------------
Columns = dict[str, "pd.Series | pa.Array"]  # scalar columns as pandas, list columns as Arrow


def _read_table(path: Path, fmt: str, text_col: str | None) -> Columns:
    try:
        if fmt == "parquet":
            table = pq.read_table(path)
            return {name: (col.combine_chunks() if _is_list(col.type) else col.to_pandas())
                    for name, col in zip(table.column_names, table.columns, strict=True)}
        # Numbers are parsed by pandas' C reader; the columns that may name texts stay text,
        # so "007" is not read as 7.
        sep = "," if fmt == "csv" else "\t"
        header = pd.read_csv(path, sep=sep, nrows=0, encoding="utf-8").columns
        texts = {c: str for c in header if c in (text_col, *TEXT_GUESSES, *KEY_GUESSES)}
        frame = pd.read_csv(path, sep=sep, dtype=texts, keep_default_na=False, na_values=[""],
                            encoding="utf-8")
        if frame.empty:
            raise VectorFileError(f"{path}: no rows (only a header)")
        return {str(c): frame[c] for c in frame.columns}
    except UnicodeDecodeError:
        raise VectorFileError(f"{path} is not valid UTF-8") from None
    except pd.errors.EmptyDataError:
        raise VectorFileError(f"{path}: no rows") from None
    except (ValueError, TypeError, pa.ArrowException, OSError) as exc:
        raise VectorFileError(f"{path}: cannot parse as {fmt}: {_exc_line(exc)}") from None


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _name_column(path: Path, cols: Columns, text_col: str | None
                 ) -> tuple[str, str, list[object]]:
    """("text" or "key", the column, its values)."""
    listed = ", ".join(cols)
    scalar = {c: v for c, v in cols.items() if isinstance(v, pd.Series)}
    if text_col is not None:
        if text_col not in scalar:
            what = "is a list column" if text_col in cols else "does not exist"
            raise VectorFileError(f"{path}: column {text_col!r} {what} (columns: {listed})")
        return "text", text_col, scalar[text_col].tolist()
    for by, guesses in (("text", TEXT_GUESSES), ("key", KEY_GUESSES)):
        for guess in guesses:
            if guess in scalar:
                return by, guess, scalar[guess].tolist()
    strings = [c for c, v in scalar.items() if v.map(lambda x: isinstance(x, str)).any()
               and not pd.to_numeric(v, errors="coerce").notna().all()]
    if len(strings) == 1:
        return "text", strings[0], scalar[strings[0]].tolist()
    raise VectorFileError(f"{path}: cannot tell which column holds the texts (columns: "
                          f"{listed}); pass --text-col")


def _numeric(series: pd.Series) -> np.ndarray | None:
    """A column's values as float64 when every cell is a number (or a missing cell, kept as
    NaN and refused later with its row), else None."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return None
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    values = pd.to_numeric(series, errors="coerce")
    given = series.notna()
    if not given.any() or values[given].isna().any():
        return None
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def _vector_columns(path: Path, cols: Columns, name_col: str, vector_cols: str | None
                    ) -> tuple[str, np.ndarray]:
    """(a description of the columns used, [rows, dim] float64)."""
    rest = {c: v for c, v in cols.items() if c != name_col and c not in KEY_GUESSES}
    lists = [c for c, v in rest.items() if isinstance(v, pa.Array)]
    if vector_cols is not None and vector_cols in lists:
        return vector_cols, _list_matrix(path, vector_cols, rest[vector_cols])
    if vector_cols is None and lists:
        if len(lists) > 1:
            raise VectorFileError(f"{path}: several list columns ({', '.join(lists)}); "
                                  "pass --vector-cols NAME")
        return lists[0], _list_matrix(path, lists[0], rest[lists[0]])
    scalar = {c: v for c, v in rest.items() if isinstance(v, pd.Series)}
    if vector_cols is None:
        chosen = _numbered_group(path, scalar)
    elif vector_cols == ALL_NUMERIC:
        chosen = [c for c, v in scalar.items() if _numeric(v) is not None]
        if not chosen:
            raise VectorFileError(f"{path}: no numeric column besides {name_col!r}")
    else:
        chosen = [c for c in scalar if c.startswith(vector_cols)]
        if not chosen:
            raise VectorFileError(f"{path}: no column starts with {vector_cols!r} (columns: "
                                  f"{', '.join(cols)})")
    blocks = []
    for c in chosen:
        values = _numeric(scalar[c])
        if values is None:
            raise VectorFileError(f"{path} {_not_a_number(scalar[c])}, column {c!r}: not a "
                                  "number, in a vector column")
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            what = "NaN (or an empty cell)" if np.isnan(values[bad[0]]) else "infinity"
            raise VectorFileError(f"{path} row {bad[0] + 1}, column {c!r}: {what}; every "
                                  "component must be a finite number")
        blocks.append(values)
    label = chosen[0] if len(chosen) == 1 else f"{chosen[0]}..{chosen[-1]}"
    return f"{label} ({len(chosen)} columns)", np.stack(blocks, axis=1)


def _not_a_number(series: pd.Series) -> str:
    """Where the first cell that is not a number is: "row N"."""
    bad = pd.to_numeric(series, errors="coerce").isna() & series.notna()
    if pd.api.types.is_bool_dtype(series.dtype) or not bad.any():
        return "row 1"
    return f"row {int(np.flatnonzero(bad.to_numpy())[0]) + 1}"


def _numbered_group(path: Path, scalar: dict[str, pd.Series]) -> list[str]:
    """Columns named PREFIX + digits, for the prefix with the most of them (each must then be
    numeric: a stray word in one is refused, never a column quietly left out)."""
    groups: dict[str, list[str]] = {}
    for c in scalar:
        m = _NUMBERED.match(c)
        if m:
            groups.setdefault(m.group(1), []).append(c)
    if not groups:
        raise VectorFileError(f"{path}: no vector columns found (a list column, or numeric "
                              "columns named like v0, v1, ...); pass --vector-cols PREFIX, or "
                              f"'{ALL_NUMERIC}' for every numeric column")
    sizes = sorted((len(v) for v in groups.values()), reverse=True)
    if len(sizes) > 1 and sizes[0] == sizes[1]:
        raise VectorFileError(f"{path}: several column groups could hold the vectors "
                              f"({', '.join(repr(p + '*') for p in groups)}); pass "
                              "--vector-cols PREFIX")
    return max(groups.values(), key=len)


def _list_matrix(path: Path, name: str, array: pa.Array) -> np.ndarray:
    """A list column as [rows, dim] float64; null, ragged or non-numeric lists refused."""
    where = f"{path} row {{}}, column {name!r}"
    if not (pa.types.is_floating(array.type.value_type)
            or pa.types.is_integer(array.type.value_type)):
        raise VectorFileError(f"{path}: column {name!r} holds lists of {array.type.value_type}, "
                              "not numbers")
    if array.null_count:
        row = int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0])
        raise VectorFileError(f"{where.format(row + 1)}: no vector (null)")
    lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
    if len(lengths) == 0:
        raise VectorFileError(f"{path}: no rows")
    bad = np.flatnonzero(lengths != lengths[0])
    if len(bad):
        row = int(bad[0])
        raise VectorFileError(f"{where.format(row + 1)}: {lengths[row]} components where row 1 "
                              f"has {lengths[0]} (every vector needs the same width)")
    values = pc.list_flatten(array)
    if values.null_count:
        flat = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        raise VectorFileError(f"{where.format(flat // int(lengths[0]) + 1)}: a component is "
                              "null")
    return values.to_numpy(zero_copy_only=False).astype(np.float64).reshape(
        len(lengths), int(lengths[0]))


# -- arrays -----------------------------------------------------------------------------------
def _read_lines(path: Path) -> list[str]:
    """One text per line (LASER's input format); the newline ending the last line is not a
    further empty text."""
    if not path.is_file():
        raise VectorFileError(f"texts file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte order mark is not text
    except UnicodeDecodeError:
        raise VectorFileError(f"texts file {path} is not valid UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.removesuffix("\r") for ln in lines]


def _as_matrix(path: Path, arr: np.ndarray, what: str) -> np.ndarray:
    if arr.ndim != 2:
        raise VectorFileError(f"{path}: {what} has shape {list(arr.shape)}; it must be 2-D "
                              "[texts, components]")
    if arr.dtype.kind not in "fiu":
        raise VectorFileError(f"{path}: {what} holds {arr.dtype}, not numbers")
    return arr if arr.dtype.kind == "f" else arr.astype(np.float64)


def _read_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise VectorFileError(f"{path}: cannot read as .npy: {_exc_line(exc)}") from None
    if not isinstance(arr, np.ndarray):
        raise VectorFileError(f"{path}: not a single .npy array")
    return _as_matrix(path, arr, "the array")


def _read_raw(path: Path, lines: int, texts: Path, dim: int | None, fp16: bool) -> np.ndarray:
    """LASER's output: rows of `dim` (default 1024) values, no header: float32, or float16
    with `fp16` (LASER's `--fp16`). A headerless file cannot say which, so it is never guessed
    from the size: the size must fit exactly, and float32 values must look like vectors."""
    size = path.stat().st_size
    width = dim or LASER_DIM
    if lines == 0:
        raise VectorFileError(f"texts file {texts} has no lines")
    dtype, other = ("float16", "float32") if fp16 else ("float32", "float16")
    item = 2 if fp16 else 4
    if size != lines * width * item:
        hint = "pass --dim if the vectors are not LASER's 1024 wide"
        if size == lines * width * (6 - item):
            hint = f"its size fits {other} values: {'drop' if fp16 else 'pass'} --fp16"
        elif size % (width * item) == 0:
            hint = (f"it holds {size // (width * item)} such rows: check that {texts} is the "
                    "file LASER read")
        raise VectorFileError(f"{path} holds {size} bytes, not {lines} rows (the lines of "
                              f"{texts}) of {width} {dtype} values; {hint}")
    matrix = np.fromfile(path, dtype="<f2" if fp16 else "<f4").reshape(lines, width)
    if not fp16:
        with np.errstate(invalid="ignore"):
            odd = np.isfinite(matrix) & (matrix != 0) & ((np.abs(matrix) < 1e-30)
                                                         | (np.abs(matrix) > 1e15))
        if odd.any():
            row, col = (int(i) for i in np.argwhere(odd)[0])
            raise VectorFileError(
                f"{path} row {row + 1}, vector component {col}: {float(matrix[row, col])!r} is "
                "no value a float32 vector holds: is the file float16 (LASER's --fp16)? pass "
                f"--fp16; else check that --dim and {texts} match the file")
    return matrix


def _read_npz(path: Path) -> tuple[str, str, list[object], str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            if "vectors" not in names or not names & {"texts", "keys"}:
                raise VectorFileError(f"{path}: an .npz needs arrays 'vectors' and 'texts' (or "
                                      f"'keys'); it has: {', '.join(sorted(names)) or 'none'}")
            by = "texts" if "texts" in names else "keys"
            labels, vectors = npz[by], npz["vectors"]
    except VectorFileError:
        raise
    except (ValueError, OSError, EOFError, KeyError) as exc:
        raise VectorFileError(f"{path}: cannot read as .npz: {_exc_line(exc)}") from None
    if labels.ndim != 1 or labels.dtype.kind != "U":
        raise VectorFileError(f"{path}: array {by!r} must be 1-D strings, not "
                              f"{labels.dtype} {list(labels.shape)}")
    matrix = _as_matrix(path, vectors, "array 'vectors'")
    if len(labels) != len(matrix):
        raise VectorFileError(f"{path}: {len(labels)} {by} but {len(matrix)} vectors; they "
                              "must pair up one to one")
    return by[:-1], by, labels.tolist(), "vectors", matrix


# -- checks -----------------------------------------------------------------------------------
def _check_finite(path: Path, matrix: np.ndarray, vectors_from: str) -> None:
    bad = ~np.isfinite(matrix)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        what = "NaN (or an empty cell)" if np.isnan(matrix[row, col]) else "infinity"
        raise VectorFileError(f"{path} row {row + 1}, vector component {col} ({vectors_from}):"
                              f" {what}; every component must be a finite number")


def _keys(path: Path, names: list[object], by: str, column: str, strict: bool
          ) -> tuple[list[str], list[int], int]:
    """(key per row that has a text, that row's position, rows without a text)."""
    keys, rows, skipped = [], [], 0
    for i, value in enumerate(names):
        where = f"{path} row {i + 1}, column {column!r}"
        if by == "key":
            if not isinstance(value, str) or not _KEY_RE.fullmatch(value):
                raise VectorFileError(f"{where}: {str(value)[:40]!r} is not a store key (32 "
                                      "lowercase hex digits); pass --text-col if it holds texts")
            keys.append(value)
            rows.append(i)
            continue
        text = clean_text(value)
        if text is None:
            if strict:
                raise VectorFileError(f"{where}: no text (and --strict is set)")
            skipped += 1
            continue
        keys.append(text_key(text))
        rows.append(i)
    if not keys:
        raise VectorFileError(f"{path}: no row has a text in column {column!r}")
    return keys, rows, skipped


def _distinct(path: Path, keys: list[str], rows: list[int], matrix: np.ndarray, by: str
              ) -> tuple[list[int], int]:
    """Positions (into `keys`) of each key's first row; a repeat must carry the same vector."""
    first: dict[str, int] = {}
    keep = []
    for j, k in enumerate(keys):
        i = first.setdefault(k, j)
        if i == j:
            keep.append(j)
        elif not np.array_equal(matrix[rows[i]], matrix[rows[j]]):
            same = "text" if by == "text" else "key"
            raise VectorFileError(f"{path} rows {rows[i] + 1} and {rows[j] + 1} give the same "
                                  f"{same} different vectors")
    return keep, len(keys) - len(keep)


def _exc_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
