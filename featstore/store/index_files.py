"""Search index files: one immutable HDF5 file per committed index, derived from a dataset's
vectors and dropped (never repaired) when damaged, since it can always be built again.

Layout (readable with h5py alone):
  /keys    fixed-width ASCII text keys, [rows]: row i of the index is the text with key i;
           chunked, Fletcher-32 checksummed
  /blob    uint8 [bytes]: the index library's own serialization (see docs/STORE.md);
           chunked, Fletcher-32 checksummed, so a flipped byte is refused before the library
           ever parses it
  attributes on /: `library` and `library_version` (who wrote the blob), `kind`

The store knows nothing about what the blob means; the search package does.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from featstore.store.errors import DamagedIndexError
from featstore.store.keys import KEY_WIDTH

_BLOB_CHUNK = 1 << 20
# what h5py raises on a damaged file (see shards.py)
_H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, UnicodeError, IndexError)


def write_index_file(path: Path, keys: list[str], blob: np.ndarray,
                     attrs: dict[str, str]) -> None:
    """Write a complete index file to `path` (a temporary name; the caller publishes it)."""
    blob = np.ascontiguousarray(blob, dtype=np.uint8).reshape(-1)
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs["featstore_index"] = 1
        for name, value in attrs.items():
            f.attrs[name] = np.bytes_(str(value).encode())
        f.create_dataset("keys", data=np.array(keys, dtype=f"S{KEY_WIDTH}"),
                         chunks=(max(1, min(len(keys), 4096)),), fletcher32=True)
        f.create_dataset("blob", data=blob, chunks=(max(1, min(len(blob), _BLOB_CHUNK)),),
                         fletcher32=True)


def read_index_file(path: Path, expected_bytes: int, what: str
                    ) -> tuple[list[str], np.ndarray, dict[str, str]]:
    """(keys, blob, attributes) of a committed index file, or a DamagedIndexError naming it:
    missing, not a regular file, another size than the manifest says, or any checksum."""
    advice = "run `featstore repair` (it drops the index; it is built again when next needed)"
    if not os.path.lexists(path):
        raise DamagedIndexError(f"{what} file {path} is missing; {advice}")
    if path.is_symlink() or not path.is_file():
        raise DamagedIndexError(f"{what} file {path} is not a regular file; {advice}")
    size = path.stat().st_size
    if size != expected_bytes:
        raise DamagedIndexError(f"{what} file {path} has {size} bytes, the manifest says "
                                f"{expected_bytes}; {advice}")
    try:
        with h5py.File(path, "r") as f:
            keys = f["keys"][:].astype("U32").tolist()
            blob = f["blob"][:]
            attrs = {k: (v.decode() if isinstance(v, bytes) else str(v))
                     for k, v in f.attrs.items()}
    except _H5_ERRORS as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DamagedIndexError(f"{what} file {path} is damaged ({text}); {advice}") from None
    if blob.dtype != np.uint8 or blob.ndim != 1:
        raise DamagedIndexError(f"{what} file {path} is damaged (blob of type {blob.dtype}); "
                                f"{advice}")
    return keys, blob, attrs
