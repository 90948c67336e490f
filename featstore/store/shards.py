"""Tensor shards: immutable HDF5 files, one per commit of one encoder.

Layout (all readable with h5py alone):
  /keys            fixed-width ASCII keys, [rows]; chunked, Fletcher-32 checksummed
  /features/NAME   per-row arrays, [rows, ...]; chunked by rows, Fletcher-32 checksummed
  /ragged/NAME/data     concatenated variable-length rows, [total, ...]
  /ragged/NAME/offsets  int64 [rows + 1]; row i is data[offsets[i]:offsets[i+1]]; checksummed
Scalars per row that are not features (window and token counts) live under /meta; facts about
the whole shard (the precision the encoder computed in: `compute_dtype`) are attributes of /.

Every dataset that holds data carries a Fletcher-32 checksum, and libver="latest" checksums the
HDF5 metadata, so a flipped byte anywhere a reader looks is refused rather than read: keys and
offsets matter as much as the vectors, since a wrong key silently hands a row to another text.
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
import os
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import h5py
import numpy as np

from featstore.store.errors import DamagedShardError
from featstore.store.keys import KEY_WIDTH

_CHUNK_ROWS = 256


def _chunk_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    # One layer per chunk keeps single-layer reads from touching the other layers.
    rows = max(1, min(shape[0], _CHUNK_ROWS))
    if len(shape) == 3:
        return (rows, 1, shape[2])
    return (rows, *shape[1:])


_hook_lock = threading.Lock()


@contextlib.contextmanager
def _quiet_h5py_teardown() -> Iterator[None]:
    """When a write fails (a full disk), h5py's object destructors report the same error again
    through sys.unraisablehook, as tracebacks on stderr; the caller already raises it once."""
    with _hook_lock:
        previous = sys.unraisablehook

        def hook(unraisable: object) -> None:
            if "h5py" not in repr(getattr(unraisable, "object", "")):
                previous(unraisable)  # type: ignore[arg-type]

        sys.unraisablehook = hook
    try:
        yield
    finally:
        with _hook_lock:
            if sys.unraisablehook is hook:
                sys.unraisablehook = previous


def io_error_text(exc: BaseException) -> str:
    """One line for an I/O failure, also from HDF5's multi-line messages ("errno = 28")."""
    code = getattr(exc, "errno", None)
    if not code:
        m = re.search(r"errno = (\d+)", str(exc))
        code = int(m.group(1)) if m else None
    if code and code in errno_mod.errorcode:
        return os.strerror(code)
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def shard_nbytes(keys: list[str], features: Mapping[str, np.ndarray],
                 ragged: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                 meta: Mapping[str, np.ndarray] | None = None) -> int:
    """About how many bytes a shard takes on disk (no compression; small HDF5 overhead)."""
    arrays = [*features.values(), *(meta or {}).values()]
    arrays += [a for pair in (ragged or {}).values() for a in pair]
    return len(keys) * KEY_WIDTH + sum(int(a.nbytes) for a in arrays) + 64 * 1024


def write_shard(
    path: Path,
    keys: list[str],
    features: Mapping[str, np.ndarray],
    ragged: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    meta: Mapping[str, np.ndarray] | None = None,
    attrs: Mapping[str, str] | None = None,
) -> None:
    """Write a complete shard to `path` (a temporary name; the caller publishes it)."""
    with _quiet_h5py_teardown():
        _write_shard(path, keys, features, ragged, meta, attrs)


def _write_shard(
    path: Path,
    keys: list[str],
    features: Mapping[str, np.ndarray],
    ragged: Mapping[str, tuple[np.ndarray, np.ndarray]] | None,
    meta: Mapping[str, np.ndarray] | None,
    attrs: Mapping[str, str] | None = None,
) -> None:
    n = len(keys)
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs["featstore_shard"] = 1
        for name, value in (attrs or {}).items():
            f.attrs[name] = np.bytes_(str(value).encode())  # fixed length: no 4 KB heap
        f.create_dataset("keys", data=np.array(keys, dtype=f"S{KEY_WIDTH}"),
                         chunks=(max(1, min(n, 4096)),), fletcher32=True)
        grp = f.create_group("features")
        for name, arr in features.items():
            if arr.shape[0] != n:
                raise ValueError(f"feature {name} has {arr.shape[0]} rows, expected {n}")
            grp.create_dataset(name, data=arr, chunks=_chunk_shape(arr.shape), fletcher32=True)
        mgrp = f.create_group("meta")
        for name, arr in (meta or {}).items():
            mgrp.create_dataset(name, data=arr, fletcher32=True, chunks=(max(1, min(n, 4096)),))
        rgrp = f.create_group("ragged")
        for name, (data, offsets) in (ragged or {}).items():
            if offsets.shape != (n + 1,):
                raise ValueError(f"ragged {name} needs {n + 1} offsets")
            g = rgrp.create_group(name)
            g.create_dataset("offsets", data=offsets.astype(np.int64), fletcher32=True,
                             chunks=(min(n + 1, 4096),))
            if data.shape[0]:
                g.create_dataset("data", data=data, chunks=_chunk_shape(data.shape),
                                 fletcher32=True)
            else:
                g.create_dataset("data", data=data)


# What h5py raises on a damaged file: its own errors are OSError, but damaged metadata can also
# surface as KeyError (a name gone), ValueError/TypeError (a type or shape gone wrong) or
# RuntimeError; every one of them becomes a DamagedShardError naming the shard.
_H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, UnicodeError, IndexError)


class ShardReader:
    """Read access to one committed shard; every failure names the shard."""

    def __init__(self, path: Path, expected_bytes: int | None = None) -> None:
        self.path = path
        if not path.exists():
            raise DamagedShardError(f"shard {path} is missing; run `featstore repair`")
        if not path.is_file():
            raise DamagedShardError(f"shard {path} is not a file; run `featstore repair`")
        if expected_bytes is not None and os.path.getsize(path) != expected_bytes:
            raise DamagedShardError(
                f"shard {path} has {os.path.getsize(path)} bytes, manifest says "
                f"{expected_bytes}; run `featstore repair`"
            )
        try:
            self._f = h5py.File(path, "r")
        except _H5_ERRORS as exc:
            raise DamagedShardError(f"shard {path} cannot be opened ({_one_line(exc)}); "
                                    "run `featstore repair`") from None

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _damaged(self, name: str, exc: BaseException) -> DamagedShardError:
        return DamagedShardError(f"shard {self.path} is damaged: {name} unreadable "
                                 f"({_one_line(exc)}); run `featstore repair`")

    def _dataset(self, name: str) -> h5py.Dataset:
        try:
            ds = self._f[name]
        except _H5_ERRORS as exc:
            raise self._damaged(name, exc) from None
        if not isinstance(ds, h5py.Dataset):
            raise self._damaged(name, TypeError("not a dataset"))
        return ds

    def _read(self, name: str, sel: object = ()) -> np.ndarray:
        ds = self._dataset(name)
        try:
            return ds[sel]
        except _H5_ERRORS as exc:
            raise self._damaged(name, exc) from None

    def keys(self) -> np.ndarray:
        try:
            return self._read("keys").astype("U32")
        except UnicodeError as exc:
            raise self._damaged("keys", exc) from None

    def shape(self, name: str) -> tuple[tuple[int, ...], str]:
        """(shape, dtype name) of a dataset, as stored."""
        ds = self._dataset(name)
        try:
            return tuple(ds.shape), str(ds.dtype)
        except _H5_ERRORS as exc:
            raise self._damaged(name, exc) from None

    def feature(self, name: str, layer_index: list[int] | None = None) -> np.ndarray:
        """A feature for all rows; `layer_index` selects along axis 1 of [rows, layers, hidden]."""
        if layer_index is None:
            return self._read(f"features/{name}")
        shape, dtype = self.shape(f"features/{name}")
        if len(shape) < 2 or any(not 0 <= li < shape[1] for li in layer_index):
            raise self._damaged(f"features/{name}", ValueError(f"shape {shape}"))
        out = np.empty((shape[0], len(layer_index), *shape[2:]), dtype=dtype)
        for j, li in enumerate(layer_index):
            out[:, j] = self._read(f"features/{name}", (slice(None), li))
        return out

    def meta(self, name: str) -> np.ndarray:
        return self._read(f"meta/{name}")

    def attr(self, name: str) -> str | None:
        """A shard-wide fact (`compute_dtype`), or None when the writer recorded none."""
        try:
            value = self._f.attrs.get(name)
        except _H5_ERRORS as exc:
            raise self._damaged(f"attribute {name}", exc) from None
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    def ragged(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return self._read(f"ragged/{name}/data"), self._read(f"ragged/{name}/offsets")

    def check_all(self) -> None:
        """Read every dataset so Fletcher-32 checksums and structure are verified."""
        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                self._read(name)
        try:
            self._f.visititems(visit)
        except _H5_ERRORS as exc:
            raise DamagedShardError(f"shard {self.path} is damaged ({_one_line(exc)})"
                                    ) from None

    def check_shapes(self, rows: int, shapes: dict[str, list[int]], dtype: str,
                     features: list[str]) -> str | None:
        """What differs from the manifest's row count, feature shapes and dtype, or None."""
        if self.shape("keys")[0] != (rows,):
            return f"holds {self.shape('keys')[0]} keys, manifest says {rows} rows"
        for name in features:
            if name not in shapes or name in ("tokens",):
                continue
            shape, got = self.shape(f"features/{name}")
            want = (rows, *shapes[name])
            if shape != want or got != dtype:
                return (f"feature {name} is {got} {list(shape)}, manifest says {dtype} "
                        f"{list(want)}")
        return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
