"""Writing a store: one locked writer, every change committed by an atomic manifest replace.

Order of a commit: data file written under tmp/, fsynced, renamed into place, then the manifest
naming it replaces the old one. A crash before the manifest replace leaves an orphan file that the
next writer deletes; a crash after it leaves a complete commit. Nothing committed is rewritten.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from featstore.store.atomic import fsync_path, publish, write_json_atomic
from featstore.store.errors import StoreError
from featstore.store.hashing import sha256_file
from featstore.store.index_files import write_index_file
from featstore.store.lock import WriterLock
from featstore.store.manifest import (
    MANIFEST_NAME,
    DatasetEntry,
    EncoderEntry,
    IndexEntry,
    Manifest,
    ShardEntry,
    check_name,
    check_relpath,
    fingerprints_match,
    read_manifest,
)
from featstore.store.safe_paths import check_no_links, real_dir
from featstore.store.shards import io_error_text, shard_nbytes, write_shard
from featstore.store.store import Store
from featstore.store.tables import write_table

if TYPE_CHECKING:  # pyarrow loads when a table is written: opening a store stays fast
    import pyarrow as pa

LOCK_NAME = ".lock"
TMP_DIR = "tmp"
ENCODERS_DIR = "encoders"
DATASETS_DIR = "datasets"
INDEXES_DIR = "indexes"
# What a writer leaves behind and the sweep may delete: nothing else, and no link, is touched.
_OWN_TMP = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\.(part|tmp)")
_OWN_SHARD = re.compile(r"shard-[0-9a-f]{16}\.h5")
_OWN_TABLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\.[0-9a-f]{8}\.parquet")
_OWN_INDEX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\.[0-9a-f]{8}\.h5")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")



def check_space(directory: Path, need: int, what: str) -> None:
    """Refuse, before writing, a file of about `need` bytes that `directory`'s disk cannot
    take (a disk that cannot say how full it is is given the benefit of the doubt)."""
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return
    if free < need:
        raise StoreError(f"no space left on device for {what}: it needs about "
                         f"{need / 1e6:.1f} MB, {free / 1e6:.1f} MB are free; everything "
                         "committed so far is kept")

def write_shard_file(
    root: str | os.PathLike,
    encoder_id: str,
    keys: list[str],
    features: Mapping[str, np.ndarray],
    ragged: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    meta: Mapping[str, np.ndarray] | None = None,
    attrs: Mapping[str, str] | None = None,
) -> ShardEntry:
    """Write a shard under tmp/ and publish it into encoders/<id>/, without taking the lock.

    The file is invisible to readers until a lock holder commits the returned entry; if that
    never happens, the next writer deletes it as an orphan. So any process that sees the store
    (a thread, or a worker on another machine) may call this while one writer holds the lock.
    """
    root = Path(root)
    check_name(encoder_id, "encoder")
    name = f"shard-{uuid.uuid4().hex[:16]}.h5"
    tmp = real_dir(root, TMP_DIR) / f"{name}.part"
    check_space(tmp.parent, shard_nbytes(keys, features, ragged, meta), f"a shard in {root}")
    try:
        write_shard(tmp, keys, features, ragged, meta, attrs)
        final = real_dir(root, ENCODERS_DIR, encoder_id, create=True) / name
        publish(tmp, final)
    except (OSError, RuntimeError) as exc:  # h5py reports some write failures as RuntimeError
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise StoreError(f"writing a shard to {root} failed: {io_error_text(exc)}; "
                         "everything committed so far is kept") from None
    return ShardEntry(
        file=f"encoders/{encoder_id}/{name}", rows=len(keys), bytes=final.stat().st_size,
        sha256=sha256_file(final), features=sorted([*features, *(ragged or {})]),
        attrs={k: str(v) for k, v in (attrs or {}).items()})


class StoreWriter:
    """Holds the store's lock for its lifetime; use as a context manager.

    `read_only_ok`: on a store this process may not write, run anyway as long as nothing needs
    committing (a re-run that finds nothing new); the first commit is then refused in one line.
    """

    def __init__(self, root: str | os.PathLike, wait: bool = False,
                 wait_timeout: float | None = None, read_only_ok: bool = False) -> None:
        self.root = Path(root)
        self.wait, self.wait_timeout = wait, wait_timeout
        self.read_only_ok = read_only_ok
        self.read_only = False
        self._lock: WriterLock | None = None
        self._scratch: tempfile.TemporaryDirectory | None = None
        self._manifest: Manifest | None = None
        self._pending = False  # manifest changes not committed yet (ensure_encoder(defer=True))

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> StoreWriter:
        self._prepare_root()
        self._lock = WriterLock(self.root / LOCK_NAME, wait=self.wait,
                                timeout=self.wait_timeout, read_only=self.read_only)
        self._lock.acquire()
        try:
            if not (self.root / MANIFEST_NAME).exists():
                write_json_atomic(self.root / MANIFEST_NAME, Manifest().to_json(), self.tmp)
            self._manifest = read_manifest(self.root)
            if not self.read_only:
                self.remove_orphans()
        except BaseException:
            self._release()
            raise
        return self

    @property
    def manifest(self) -> Manifest:
        """The manifest this writer commits; there is one only inside `with StoreWriter(...)`,
        where the writer holds the lock."""
        if self._manifest is None:
            raise StoreError(f"the writer of store {self.root} is not open; use it as "
                             "`with StoreWriter(root) as writer:`")
        return self._manifest

    def __exit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def _refuse_read_only(self, what: str) -> None:
        if self.read_only:
            raise StoreError(f"store {self.root} is read-only; featurize needs write access to "
                             f"{what}")

    def _prepare_root(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"store path {self.root} exists and is not a directory")
        if self.root.is_dir() and not (self.root / MANIFEST_NAME).exists():
            stray = [p.name for p in self.root.iterdir() if p.name not in (LOCK_NAME, TMP_DIR)]
            if stray:
                raise StoreError(f"{self.root} is not a featstore store (no {MANIFEST_NAME}) "
                                 "and is not empty; choose another --store")
        for name in (LOCK_NAME, MANIFEST_NAME, TMP_DIR, ENCODERS_DIR, DATASETS_DIR, INDEXES_DIR):
            check_no_links(self.root, self.root / name)
        writable = not self.root.exists() or os.access(self.root, os.W_OK)
        if not writable:
            if self.read_only_ok and (self.root / MANIFEST_NAME).is_file() and \
                    (self.root / LOCK_NAME).is_file():
                self.read_only = True
                self._scratch = tempfile.TemporaryDirectory(prefix="featstore-")
                return
            raise StoreError(f"store {self.root} is read-only; featurize needs write access")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create store at {self.root}: {exc.strerror}") from None
        real_dir(self.root, TMP_DIR, create=True)

    @property
    def tmp(self) -> Path:
        """Where files are written before they are published: the store's tmp/ (or, for a
        read-only store, a scratch directory that nothing is ever published from)."""
        if self._scratch is not None:
            return Path(self._scratch.name)
        return real_dir(self.root, TMP_DIR)

    def store(self) -> Store:
        """A reader over what is committed now."""
        return Store(self.root)

    def remove_orphans(self) -> list[Path]:
        """Delete files a crashed writer left behind. Only files named as featstore names its
        own temporary, shard and table files are deleted, never one the manifest names, never a
        link, never anything outside the store."""
        named = {s.file for e in self.manifest.encoders.values() for s in e.shards}
        named |= {d.file for d in self.manifest.datasets.values()}
        named |= {d.file for d in self.manifest.indexes.values()}
        for rel in named:  # a manifest naming a path outside the store stops the writer here
            check_relpath(rel, self.root)
        removed = [p for p in _own_files(self.tmp, _OWN_TMP) if _unlink(p)]
        for enc_dir in _real_subdirs(real_dir(self.root, ENCODERS_DIR)):
            for p in _own_files(enc_dir, _OWN_SHARD):
                if f"{ENCODERS_DIR}/{enc_dir.name}/{p.name}" not in named and _unlink(p):
                    removed.append(p)
        for p in _own_files(real_dir(self.root, DATASETS_DIR), _OWN_TABLE):
            if f"{DATASETS_DIR}/{p.name}" not in named and _unlink(p):
                removed.append(p)
        for p in _own_files(real_dir(self.root, INDEXES_DIR), _OWN_INDEX):
            if f"{INDEXES_DIR}/{p.name}" not in named and _unlink(p):
                removed.append(p)
        return removed

    def _commit(self) -> None:
        self._refuse_read_only("commit new features")
        self.manifest.generation += 1
        write_json_atomic(self.root / MANIFEST_NAME, self.manifest.to_json(), self.tmp)
        self._pending = False

    # -- encoders and shards ------------------------------------------------------------------
    def ensure_encoder(self, encoder_id: str, fingerprint: dict, dtype: str,
                       feature_shapes: Mapping[str, list[int]], defer: bool = False) -> None:
        """Register an encoder, or widen the features an existing one may hold.

        Commits only when the entry changes, so a run with nothing new leaves the store as is;
        with `defer`, the change waits for the next commit (a shard's), so a pass that stops
        before its first shard leaves no empty encoder behind.
        """
        check_name(encoder_id, "encoder")
        entry = self.manifest.encoders.get(encoder_id)
        if entry is not None and fingerprints_match(entry.fingerprint, fingerprint) and \
                entry.dtype == dtype and \
                all(entry.feature_shapes.get(k) == list(v) for k, v in feature_shapes.items()):
            return
        if entry is None:
            self.manifest.encoders[encoder_id] = EncoderEntry(
                fingerprint=fingerprint, dtype=dtype,
                feature_shapes={k: list(v) for k, v in feature_shapes.items()}, created=_now())
        else:
            if not fingerprints_match(entry.fingerprint, fingerprint):
                raise StoreError(f"encoder id {encoder_id} already names another fingerprint")
            for k, v in feature_shapes.items():
                if k in entry.feature_shapes and entry.feature_shapes[k] != list(v):
                    raise StoreError(f"feature {k} of {encoder_id} has shape "
                                     f"{entry.feature_shapes[k]}, not {list(v)}")
                entry.feature_shapes[k] = list(v)
        if defer:
            self._pending = True
        else:
            self._commit()

    def commit_pending(self) -> None:
        """Commit what `ensure_encoder(defer=True)` left pending, if nothing committed it."""
        if self._pending:
            self._commit()

    def write_shard_file(
        self,
        encoder_id: str,
        keys: list[str],
        features: Mapping[str, np.ndarray],
        ragged: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
        meta: Mapping[str, np.ndarray] | None = None,
        attrs: Mapping[str, str] | None = None,
    ) -> ShardEntry:
        """Write and publish a shard file (not yet committed). Safe to call from a thread."""
        self._refuse_read_only(f"store {len(keys)} new texts")
        return write_shard_file(self.root, encoder_id, keys, features, ragged, meta, attrs)

    def commit_source(self, encoder_id: str, fingerprint: dict, dtype: str,
                      feature_shapes: Mapping[str, list[int]], shards: list[ShardEntry],
                      replaces: str | None = None) -> None:
        """Register a complete source (its shards already written by `write_shard_file`) and
        drop the source `replaces`, in one commit: readers see the old source or the new one,
        never a source half imported. The dropped source's files are left for the next
        writer's orphan sweep (readers may hold them)."""
        check_name(encoder_id, "encoder")
        if encoder_id in self.manifest.encoders and encoder_id != replaces:
            raise StoreError(f"encoder id {encoder_id} is already taken")
        if replaces is not None:
            self.manifest.encoders.pop(replaces, None)
        self.manifest.encoders[encoder_id] = EncoderEntry(
            fingerprint=fingerprint, dtype=dtype,
            feature_shapes={k: list(v) for k, v in feature_shapes.items()},
            shards=list(shards), created=_now())
        self._commit()

    def commit_shard(self, encoder_id: str, shard: ShardEntry) -> None:
        self.commit_shards(encoder_id, [shard])

    def commit_shards(self, encoder_id: str, shards: list[ShardEntry]) -> None:
        """Add shards (written by `write_shard_file`) to a source in one commit."""
        self.manifest.encoders[encoder_id].shards.extend(shards)
        self._commit()

    # -- datasets -----------------------------------------------------------------------------
    def commit_dataset(self, name: str, table: pa.Table | Path, *, text_column: str,
                       source: str, encoders: list[str], skipped: int,
                       may_replace: bool = True,
                       pair_columns: list[str] | None = None) -> DatasetEntry:
        """Replace (or add) a dataset table, given in memory or as a Parquet file under tmp/;
        `pair_columns` names the two text columns of a pair dataset.

        A table identical to the committed one is not written again: the committed file stays,
        and only a changed description (encoders, source, ...) is committed. Encoders that
        featurized the previous table stay listed when the rows are the same. A replaced table
        file is left for the next writer's orphan sweep (readers may hold it).
        """
        check_name(name, "dataset")
        fname = f"{name}.{uuid.uuid4().hex[:8]}.parquet"
        final = real_dir(self.root, DATASETS_DIR, create=not self.read_only) / fname
        tmp = table if isinstance(table, Path) else self.tmp / f"{fname}.part"
        try:
            if not isinstance(table, Path):
                write_table(tmp, table)
            import pyarrow.parquet as pq

            rows = pq.ParquetFile(tmp).metadata.num_rows
            sha = sha256_file(tmp)
            old = self.manifest.datasets.get(name)
            same = old is not None and old.sha256 == sha
            if old is not None and not same and not may_replace:
                raise StoreError(f"dataset {name!r} already holds other rows (from "
                                 f"{old.source}); pass another name, or replace=True (--replace)")
            if same:
                tmp.unlink()
            else:
                self._refuse_read_only(f"record dataset {name}")
                publish(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"writing dataset {name} to {self.root} failed: {exc}") from None
        merged = sorted(set(encoders) | (set(old.encoders) if same else set()))
        if same and self.read_only:
            return old  # the rows are already recorded; a description change can wait
        if same:
            entry = replace(old, text_column=text_column, source=source, encoders=merged,
                            skipped=skipped, pair_columns=list(pair_columns or []))
            if entry == old:
                self.commit_pending()
                return old
            entry.updated = _now()
        else:
            entry = DatasetEntry(file=f"datasets/{fname}", rows=rows,
                                 bytes=final.stat().st_size, sha256=sha,
                                 text_column=text_column, source=source, encoders=merged,
                                 skipped=skipped, updated=_now(),
                                 pair_columns=list(pair_columns or []))
        self.manifest.datasets[name] = entry
        self._commit()
        # The replaced table stays until the next writer's orphan sweep, so a reader holding
        # the previous snapshot can still read it while this writer runs.
        return entry

    # -- search indexes -----------------------------------------------------------------------
    def commit_index(self, index_id: str, keys: list[str], blob: np.ndarray, *, dataset: str,
                     source: str, kind: str, meta: dict, attrs: Mapping[str, str]) -> IndexEntry:
        """Write an index file (tmp/, fsync, rename into indexes/) and commit it under
        `index_id`, replacing the index of that id in the same commit. The replaced file is left
        for the next writer's sweep (a reader may hold it)."""
        check_name(index_id, "index")
        self._refuse_read_only(f"keep index {index_id}")
        name = f"{index_id}.{uuid.uuid4().hex[:8]}.h5"
        tmp = self.tmp / f"{name}.part"
        check_space(tmp.parent, int(blob.nbytes) + 32 * len(keys) + 64 * 1024,
                    f"index {index_id} in {self.root}")
        try:
            write_index_file(tmp, keys, blob, dict(attrs))
            final = real_dir(self.root, INDEXES_DIR, create=True) / name
            publish(tmp, final)
        except (OSError, RuntimeError) as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise StoreError(f"writing index {index_id} to {self.root} failed: "
                             f"{io_error_text(exc)}; everything committed so far is kept"
                             ) from None
        entry = IndexEntry(file=f"{INDEXES_DIR}/{name}", bytes=final.stat().st_size,
                           sha256=sha256_file(final), dataset=dataset, source=source,
                           rows=len(keys), kind=kind, meta=meta, created=_now())
        self.manifest.indexes[index_id] = entry
        self._commit()
        return entry

    def drop_indexes(self, index_ids: list[str]) -> None:
        """Forget indexes (they are built again when next needed) and delete their files."""
        gone = [self.manifest.indexes.pop(i) for i in index_ids if i in self.manifest.indexes]
        if not gone:
            return
        self._commit()
        for e in gone:
            self._unlink_quietly(e.file)

    # -- repair -------------------------------------------------------------------------------
    def repair(self) -> dict:
        """Drop every damaged shard, table and index so the next featurize recomputes them (and
        the next search builds the index again)."""
        damage = self.store().damaged()
        if damage.problems:
            self.drop(damage.shards, damage.datasets, damage.indexes)
        return {"shards": damage.shards, "datasets": damage.datasets,
                "indexes": damage.indexes, "problems": damage.problems}

    def drop(self, shards: Mapping[str, list[str]], datasets: list[str],
             indexes: list[str] = ()) -> None:  # type: ignore[assignment]
        """Forget damaged shards (by file), datasets and indexes, so the next featurize
        recomputes them; an index of a dropped dataset goes with it."""
        for enc_id, files in shards.items():
            e = self.manifest.encoders[enc_id]
            e.shards = [s for s in e.shards if s.file not in files]
        for name in datasets:
            self.manifest.datasets.pop(name, None)
        dropped = [self.manifest.indexes.pop(i) for i in
                   [*indexes, *(i for i, e in self.manifest.indexes.items()
                                if e.dataset in datasets and i not in indexes)]
                   if i in self.manifest.indexes]
        self._commit()
        for files in shards.values():
            for f in files:
                self._unlink_quietly(f)
        for e in dropped:
            self._unlink_quietly(e.file)

    def _unlink_quietly(self, rel: str) -> None:
        try:
            check_relpath(rel, self.root).unlink(missing_ok=True)
            fsync_path(self.root)
        except (OSError, StoreError):
            pass


def _real_subdirs(base: Path) -> list[Path]:
    if not base.is_dir():
        return []
    with os.scandir(base) as it:
        return [Path(e.path) for e in it if e.is_dir(follow_symlinks=False)]


def _own_files(base: Path, pattern: re.Pattern) -> list[Path]:
    """Regular files (not links) in `base` whose names match `pattern` exactly."""
    if not base.is_dir():
        return []
    with os.scandir(base) as it:
        return [Path(e.path) for e in it
                if pattern.fullmatch(e.name) and e.is_file(follow_symlinks=False)]


def _unlink(p: Path) -> bool:
    try:
        p.unlink()
    except FileNotFoundError:
        return False
    return True
