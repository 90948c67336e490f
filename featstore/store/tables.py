"""Dataset tables: one Parquet file per featurized corpus, `_key` first, then the corpus columns."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from featstore.store.errors import DamagedShardError

KEY_COLUMN = "_key"


def write_table(path: Path, table: pa.Table) -> None:
    pq.write_table(table, path, compression="zstd")


def read_table(path: Path) -> pd.DataFrame:
    try:
        return pq.read_table(path).to_pandas()
    except (OSError, pa.ArrowException) as exc:
        raise DamagedShardError(f"dataset table {path} is damaged or missing ({exc}); "
                                "run `featstore repair`") from None
