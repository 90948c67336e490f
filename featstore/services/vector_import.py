"""Importing vectors made elsewhere (LASER's own tools, any embedding or numeric features) as a
named vector source of the store, fused into heads with `--fuse NAME` like LASER's vectors.

An imported source is one fingerprint (kind "vectors": its name, the file's SHA-256, how the file
was read, width and storage dtype) with one feature, "vector" [dim], per text key. The whole file
is read and checked, and the store consulted, before anything is written; the source then
appears in one commit. Importing the same file again changes nothing, unless `repair` dropped some
of its rows: then those rows are written again, under the same fingerprint, so heads fused with
it work again. Another file under a name already in use replaces that source only when asked
(`replace`), or, with `add`, adds the vectors of texts the source lacks (new texts a fused head is
asked to predict), keeping the source's fingerprint: texts it holds must come with the vectors it
holds.

Rows given as texts are keyed by the store's rule, so they join any dataset holding those texts,
whenever it is featurized (texts no dataset holds yet are kept, and counted; `strict` refuses
them). Rows given as keys must name texts the store already knows: a key alone cannot be joined
with a text later.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featstore.featurize.model_names import ALL_FEATURES
from featstore.services.vector_files import VectorFile, VectorFileError, read_vector_file
from featstore.store import (
    KEY_COLUMN,
    FeatstoreError,
    Store,
    StoreWriter,
    check_name,
    default_store_path,
    fingerprint_id,
    fingerprints_match,
    names_model,
)

KIND = "vectors"
FEATURE = "vector"  # what every vector source (LASER, imported) stores per text
# Names a source may not take: source kinds (--fuse reads them as kinds) and the features an
# encoder stores (features(kind=...) reads them as the encoder's), so no name shadows another.
RESERVED_NAMES = ("encoder", "laser", "vectors", *ALL_FEATURES, "tokens", FEATURE)
DTYPES = ("float16", "float32")


class VectorImportError(FeatstoreError):
    """Vectors that cannot be imported into this store as asked."""


@dataclass
class ImportSummary:
    """What an import did, as `import-vectors --json` prints it."""

    store: str
    name: str
    source_id: str
    status: str  # "imported", "replaced", "restored" (rows repair dropped), "added" (--add) or
    # "unchanged"
    replaced: str | None  # the id of the source this import replaced
    file: str
    sha256: str
    texts_file: str | None
    by: str  # rows name texts by "text" or by "key"
    column: str
    vectors_from: str
    dim: int
    dtype: str
    rows_read: int
    vectors: int
    skipped: int
    duplicates: int
    in_datasets: int  # vectors whose text is in a dataset of the store
    bytes_written: int
    seconds: float
    added: int = 0  # vectors --add wrote (texts the source lacked)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def vectors_fingerprint(name: str, vf: VectorFile, dtype: str) -> dict[str, Any]:
    """What the stored vectors depend on: the file's bytes (and the --texts file's), how it was
    read, and the storage precision."""
    fp: dict[str, Any] = {"kind": KIND, "name": name, "file_sha256": vf.sha256,
                          "format": vf.fmt, "by": vf.by, "column": vf.column,
                          "vectors_from": vf.vectors_from, "dim": vf.dim, "dtype": dtype,
                          "rows": len(vf.keys)}
    if vf.texts_sha256 is not None:
        fp["texts_sha256"] = vf.texts_sha256
    return fp


def import_vectors(path: str | Path, store_path: str | Path | None, name: str, *,
                   text_col: str | None = None, vector_cols: str | None = None,
                   texts: str | Path | None = None, dim: int | None = None,
                   dtype: str = "float32", replace: bool = False, strict: bool = False,
                   shard_rows: int = 2048, wait: bool = False, progress: bool = False,
                   fp16: bool = False, add: bool = False) -> ImportSummary:
    """Import the vectors of `path` into the store as source `name` (see the module docstring);
    with `add`, add the vectors of texts the source lacks to it, keeping its fingerprint, so
    heads fused with it read them. Every refusal is one line and leaves the store as it was."""
    start = time.perf_counter()
    check_name(name, "source")
    if name in RESERVED_NAMES:
        raise VectorImportError(f"source name {name!r} is reserved (a source kind, or a feature "
                                f"encoders store); choose another --name (e.g. {name}-ext)")
    if dtype not in DTYPES:
        raise VectorImportError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if shard_rows < 1:
        raise VectorImportError(f"shard_rows must be at least 1, not {shard_rows}")
    if add and replace:
        raise VectorImportError("--add keeps a source's vectors and adds others; --replace "
                                "swaps them for another file's: use one")
    vf = read_vector_file(path, text_col=text_col, vector_cols=vector_cols, texts=texts,
                          dim=dim, strict=strict, fp16=fp16)
    values = _stored_values(vf, dtype)
    fingerprint = vectors_fingerprint(name, vf, dtype)
    root = default_store_path(store_path)

    def summary(source_id: str, status: str, replaced: str | None, in_datasets: int,
                written: int) -> ImportSummary:
        return ImportSummary(
            store=str(root), name=name, source_id=source_id, status=status, replaced=replaced,
            file=str(vf.path), sha256=vf.sha256, texts_file=None if texts is None else str(texts),
            by=vf.by, column=vf.column, vectors_from=vf.vectors_from, dim=vf.dim, dtype=dtype,
            rows_read=vf.rows_read, vectors=len(vf.keys), skipped=vf.skipped,
            duplicates=vf.duplicates, in_datasets=in_datasets, bytes_written=written,
            seconds=time.perf_counter() - start)

    # Checked first with a reader: a refused or unchanged import never opens a writer.
    store = Store(root) if (root / "manifest.json").is_file() else None
    if add:
        source_id = _added_to(store, root, name, vf)
        dtype = store.encoder_entry(source_id).dtype  # type: ignore[union-attr]
        new_rows = _new_rows(store, source_id, name, vf, dtype)  # type: ignore[arg-type]
        written = 0
        if len(new_rows):
            with StoreWriter(root, wait=wait) as writer:
                new_rows = _new_rows(writer.store(), source_id, name, vf, dtype)
                written = _write_rows(writer, source_id, vf, new_rows,
                                      _stored_values(vf, dtype), shard_rows, progress)
        dataset_keys = _dataset_keys(store)
        result = summary(source_id, "added" if len(new_rows) else "unchanged", None,
                         sum(k in dataset_keys for k in vf.keys), written)
        result.added = len(new_rows)
        return result
    plan = _import_plan(store, root, name, fingerprint, vf, replace, strict)
    if plan.unchanged is not None:
        return summary(plan.unchanged, "unchanged", None, plan.in_datasets, 0)
    with StoreWriter(root, wait=wait) as writer:
        plan = _import_plan(writer.store(), root, name, fingerprint, vf, replace, strict)
        if plan.unchanged is not None:
            return summary(plan.unchanged, "unchanged", None, plan.in_datasets, 0)
        if plan.restores:  # the rows repair dropped, written again beside the others
            source_id = plan.replaces or ""
            rows = _new_rows(writer.store(), source_id, name, vf, dtype)
            written = _write_rows(writer, source_id, vf, rows, values, shard_rows, progress)
            return summary(source_id, "restored", None, plan.in_datasets, written)
        source_id = _free_id(writer.store(), name, fingerprint, plan.replaces)
        shards = []
        from tqdm import tqdm

        with tqdm(total=len(vf.keys), unit="vector", desc="import-vectors",
                  disable=not progress, leave=False) as bar:
            for s in range(0, len(vf.keys), shard_rows):
                keys = vf.keys[s:s + shard_rows]
                shards.append(writer.write_shard_file(source_id, keys,
                                                      {FEATURE: values[s:s + shard_rows]}))
                bar.update(len(keys))
        writer.commit_source(source_id, fingerprint, dtype, {FEATURE: [vf.dim]}, shards,
                             replaces=plan.replaces)
    status = "restored" if plan.restores else "replaced" if plan.replaces else "imported"
    return summary(source_id, status, None if plan.restores else plan.replaces,
                   plan.in_datasets, sum(s.bytes for s in shards))


# How far float16 storage may move a row, relative to the row's length: rounding alone moves
# it by at most 2^-11 (0.05%); more means values below float16's range were flushed to zero.
FLOAT16_ROW_TOLERANCE = 0.01


def _stored_values(vf: VectorFile, dtype: str) -> np.ndarray:
    """The vectors in the storage dtype; values float16 cannot hold are refused: too large
    (infinite), or so small that a row would lose more than 1% of its length."""
    with np.errstate(over="ignore", under="ignore"):
        out = np.ascontiguousarray(vf.vectors, dtype=np.dtype(dtype))
    bad = ~np.isfinite(out)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        value = float(vf.vectors[row, col])
        raise VectorImportError(f"{vf.path} row {vf.file_rows[row] + 1}, vector component "
                                f"{col}: {value!r} is too large for {dtype}; pass --dtype "
                                "float32")
    if dtype == "float16":
        given = vf.vectors.astype(np.float64)
        norm = np.linalg.norm(given, axis=1)
        moved = np.linalg.norm(out.astype(np.float64) - given, axis=1)
        lost = np.flatnonzero(moved > FLOAT16_ROW_TOLERANCE * norm)
        if len(lost):
            row = int(lost[0])
            raise VectorImportError(
                f"{vf.path} row {vf.file_rows[row] + 1}: its values (largest "
                f"{float(np.abs(given[row]).max()):.3g}) are too small for float16, which would "
                f"change the vector by {100 * moved[row] / norm[row]:.0f}%; pass --dtype float32")
    return out


@dataclass
class _Plan:
    unchanged: str | None  # id of the source already holding exactly this import
    replaces: str | None  # id of the source of the same name this import replaces
    in_datasets: int
    restores: bool = False  # the same file again, for rows `repair` dropped: written again


def _import_plan(store: Store | None, root: Path, name: str, fingerprint: dict, vf: VectorFile,
          replace: bool, strict: bool) -> _Plan:
    """What importing means for this store, or a one-line refusal."""
    encoders = store.manifest.encoders if store is not None else {}
    dataset_keys = _dataset_keys(store)
    in_datasets = sum(k in dataset_keys for k in vf.keys)
    for enc_id, e in encoders.items():
        fp = e.fingerprint
        if e.kind == KIND and fp.get("name") == name:
            if fingerprints_match(fp, fingerprint):
                if store is not None and store.has(enc_id, vf.keys, [FEATURE]).all():
                    return _Plan(enc_id, None, in_datasets)
                return _Plan(None, enc_id, in_datasets, restores=True)  # after a repair
            if not replace:
                raise VectorImportError(
                    f"source {name!r} already holds vectors of another file (sha256 "
                    f"{str(fp.get('file_sha256'))[:12]}..., {fp.get('dim')} dims); pass "
                    "--replace to replace them, or another --name")
            replaces = enc_id
            break
        if name in (enc_id, fp.get("name")) or names_model(name, fp.get("model")):
            raise VectorImportError(f"name {name!r} already names source {enc_id} of store "
                                    f"{root}; choose another --name")
    else:
        replaces = None
    if vf.by == "key":
        known = dataset_keys | _stored_keys(store)
        unknown = [i for i, k in enumerate(vf.keys) if k not in known]
        if unknown:
            i = unknown[0]
            raise VectorImportError(
                f"{vf.path}: {len(unknown)} of {len(vf.keys)} keys name no text of store "
                f"{root} (first: row {vf.file_rows[i] + 1}, key {vf.keys[i]}); keys join only "
                "texts the store holds: featurize those texts first, or give texts instead")
    elif strict and in_datasets < len(vf.keys):
        i = next(i for i, k in enumerate(vf.keys) if k not in dataset_keys)
        raise VectorImportError(
            f"{vf.path}: {len(vf.keys) - in_datasets} of {len(vf.keys)} texts are in no dataset "
            f"of store {root} (first: row {vf.file_rows[i] + 1}) and --strict is set")
    return _Plan(None, replaces, in_datasets)


def _added_to(store: Store | None, root: Path, name: str, vf: VectorFile) -> str:
    """The id of the imported source `--add` adds to, refused where the file cannot join it."""
    found = [k for k, e in (store.manifest.encoders.items() if store is not None else ())
             if e.kind == KIND and e.fingerprint.get("name") == name]
    if not found:
        raise VectorImportError(f"store {root} holds no imported source {name!r} to add "
                                "vectors to; import the file without --add")
    fp = store.encoder_entry(found[0]).fingerprint  # type: ignore[union-attr]
    if vf.dim != fp.get("dim"):
        raise VectorImportError(f"{vf.path}: vectors are {vf.dim} wide, source {name!r} holds "
                                f"{fp.get('dim')}-wide ones; --add takes vectors made as the "
                                "source's were")
    return found[0]


def _new_rows(store: Store, source_id: str, name: str, vf: VectorFile, dtype: str
              ) -> np.ndarray:
    """Positions of the file's keys the source lacks; a key it holds must come with the vector
    stored (as stored: in the source's dtype), else the file is refused."""
    held = store.has(source_id, vf.keys, [FEATURE])
    if held.any():
        idx = np.flatnonzero(held)
        stored = store.gather(source_id, [vf.keys[i] for i in idx], FEATURE)
        given = _stored_values(vf, dtype)[idx]
        differ = np.flatnonzero(~np.all(stored == given, axis=1))
        if len(differ):
            row = vf.file_rows[int(idx[differ[0]])]
            raise VectorImportError(f"{vf.path} row {row + 1}: source {name!r} already holds "
                                    "another vector for this text; a text keeps the vector it "
                                    "was imported with (--replace swaps the whole source)")
    return np.flatnonzero(~held)


def _write_rows(writer: StoreWriter, source_id: str, vf: VectorFile, rows: np.ndarray,
                values: np.ndarray, shard_rows: int, progress: bool) -> int:
    """Shards of these rows, committed to the source in one commit; bytes written."""
    from tqdm import tqdm

    shards = []
    with tqdm(total=len(rows), unit="vector", desc="import-vectors", disable=not progress,
              leave=False) as bar:
        for s in range(0, len(rows), shard_rows):
            part = rows[s:s + shard_rows]
            shards.append(writer.write_shard_file(
                source_id, [vf.keys[i] for i in part], {FEATURE: values[part]},
                attrs={"file_sha256": vf.sha256}))
            bar.update(len(part))
    writer.commit_shards(source_id, shards)
    return sum(s.bytes for s in shards)


def _dataset_keys(store: Store | None) -> set[str]:
    if store is None:
        return set()
    out: set[str] = set()
    for name in store.manifest.datasets:
        out.update(store.dataset(name)[KEY_COLUMN].tolist())
    return out


def _stored_keys(store: Store | None) -> set[str]:
    """Keys any source holds a row for (texts featurized without a dataset included)."""
    if store is None:
        return set()
    out: set[str] = set()
    for enc_id, e in store.manifest.encoders.items():
        if e.feature_shapes:
            out.update(store.index(enc_id, sorted(e.feature_shapes)[0]))
    return out


def _free_id(store: Store, name: str, fingerprint: dict, replaces: str | None) -> str:
    base = source_id = fingerprint_id(name, fingerprint)
    n = 1
    while source_id in store.manifest.encoders and source_id != replaces:
        n += 1
        source_id = f"{base}-{n}"
    return source_id


__all__ = ["DTYPES", "FEATURE", "KIND", "ImportSummary", "VectorFileError", "VectorImportError",
           "import_vectors", "vectors_fingerprint"]
