"""Where a store is: `--store`, else $FEATSTORE_DIR, else ./featstore. Light, so a command that
only checks its arguments imports nothing heavy."""

from __future__ import annotations

import os
from pathlib import Path

ENV_STORE = "FEATSTORE_DIR"


def default_store_path(path: str | os.PathLike | None = None) -> Path:
    """--store, else $FEATSTORE_DIR, else ./featstore."""
    return Path(path or os.environ.get(ENV_STORE) or "featstore")
