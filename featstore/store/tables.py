"""Dataset tables: one Parquet file per featurized corpus, `_key` first, then the corpus columns."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from featstore.store.errors import DamagedShardError
from featstore.store.hashing import sha256_bytes

if TYPE_CHECKING:  # loaded on first use, so opening a store imports neither
    import pandas as pd
    import pyarrow as pa


def write_table(path: Path, table: pa.Table) -> None:
    import pyarrow.parquet as pq

    pq.write_table(table, path, compression="zstd")


def read_table(path: Path, sha256: str | None = None) -> pd.DataFrame:
    """Read a table; with `sha256`, refuse a file whose bytes differ from what was committed.

    Parquet pages carry no checksum by default, so a flipped byte could otherwise change a key
    or a label silently. Tables are small next to the shards, so hashing them costs little.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = _checked_bytes(path, sha256)
    try:
        return numpy_backed(pq.read_table(pa.BufferReader(raw)).to_pandas())
    except (OSError, pa.ArrowException) as exc:
        raise DamagedShardError(f"dataset table {path} is damaged ({exc}); "
                                "run `featstore repair`") from None


def _checked_bytes(path: Path, sha256: str | None) -> bytes:
    """A table file's bytes, refused when missing, unreadable or (with `sha256`) changed."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DamagedShardError(f"dataset table {path} is missing; run `featstore repair`"
                                ) from None
    except OSError as exc:
        raise DamagedShardError(f"dataset table {path} cannot be read ({exc.strerror})") from None
    if sha256 is not None and sha256_bytes(raw) != sha256:
        raise DamagedShardError(f"dataset table {path} fails its checksum (damaged); "
                                "run `featstore repair`")
    return raw


def read_columns(path: Path, sha256: str | None = None) -> list[str]:
    """A table's column names from its Parquet schema (pyarrow only, no pandas: quick); with
    `sha256`, refused as `read_table` refuses a changed file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = _checked_bytes(path, sha256)
    try:
        return list(pq.read_schema(pa.BufferReader(raw)).names)
    except (OSError, pa.ArrowException) as exc:
        raise DamagedShardError(f"dataset table {path} is damaged ({exc}); "
                                "run `featstore repair`") from None


def numpy_backed(df: pd.DataFrame) -> pd.DataFrame:
    """String columns as numpy object arrays of str (missing: None), as scikit-learn and numpy
    indexing expect; pandas would otherwise hand back Arrow-backed string arrays."""
    import pandas as pd

    for col in df.columns:
        if isinstance(df[col].dtype, pd.StringDtype):
            values = df[col].to_numpy(dtype=object, na_value=None)
            df[col] = pd.Series(values, index=df.index, dtype=object)
    return df


def same_source(recorded: str, path: Path) -> bool:
    """Whether a dataset's recorded source is this file (sources recorded before they were made
    absolute are resolved from the current directory)."""
    try:
        return Path(recorded).resolve() == path.resolve()
    except OSError:
        return False
