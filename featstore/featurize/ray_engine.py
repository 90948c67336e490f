"""Featurize on Ray Data: the local pass, spread over an actor pool (one encoder per actor).

The driver reads the corpus, writes the dataset table, and finds the texts not yet committed,
exactly as the local engine does. Actors encode blocks of those texts with the same
`encode_shards` function and publish each shard into the store without the lock
(`write_shard_file`); they send back only the shard's manifest entry. The driver holds the
store's lock for the whole job and commits each entry as it arrives, so a killed job keeps every
shard committed so far, and its published-but-uncommitted files are orphans that the next writer
deletes. The store must therefore sit on a filesystem every node sees at the same path.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from featstore.featurize.corpus import CorpusError, open_corpus
from featstore.featurize.encoder import EncoderError
from featstore.featurize.pipeline import (
    FeaturizeOptions,
    _clean,
    default_batch_tokens,
    encode_shards,
    laser_encoder_id,
    load_encoder,
    load_laser,
    scan_corpus,
)
from featstore.store import (
    KEY_COLUMN,
    FeatstoreError,
    StoreWriter,
    check_name,
    default_store_path,
    text_key,
)
from featstore.store.manifest import ShardEntry
from featstore.store.writer import write_shard_file

RAY_MISSING = ("--engine ray needs Ray Data, which is not installed: "
               "pip install 'ray[data]' (or pip install 'featstore[ray]')")
_RESULT_COLUMNS = ["encoder_id", "file", "rows", "bytes", "sha256", "features", "windows",
                   "seconds"]
_QUIET_ENV = {"TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false",
              "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


class RayEngineError(FeatstoreError):
    """The Ray engine cannot run as asked (Ray missing, cluster unreachable, a worker failed)."""


def import_ray():
    """Ray is optional: imported only for --engine ray, with a one-line hint when missing."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RayEngineError(RAY_MISSING) from None
    return ray


@dataclass
class _Pending:
    """What the driver found to do: blocks of (key, text, encode?, laser?) rows."""

    blocks: list[pd.DataFrame]
    encode: int
    laser: int


class ShardWorker:
    """Ray actor: loads the encoder (and LASER) once, turns each block into committed-ready shards.

    Returns one row per shard file written (its manifest entry), never the vectors themselves.
    """

    def __init__(self, root: str, options: FeaturizeOptions, encoder_id: str,
                 laser_id: str | None) -> None:
        self.root = root
        self.options = options
        self.encoder = load_encoder(options)
        if self.encoder.encoder_id != encoder_id:
            raise EncoderError(
                f"a worker loaded encoder {self.encoder.encoder_id}, the driver {encoder_id}: "
                "every node must see the same model files")
        self.encoder_id = encoder_id
        self.batch_tokens = default_batch_tokens(self.encoder, options.batch_tokens)
        self.laser = None
        self.laser_id = laser_id
        if laser_id is not None:
            self.laser = load_laser(options, warn=lambda msg: None)
            if self.laser is None or laser_encoder_id(self.laser, options.dtype)[0] != laser_id:
                raise EncoderError("a worker cannot load the driver's LASER models: every node "
                                   "must see the same --laser-dir")

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows: list[dict] = []
        keys = batch[KEY_COLUMN].tolist()
        texts = batch["text"].tolist()
        enc = batch["encode"].to_numpy(dtype=bool)
        if enc.any():
            t0 = time.perf_counter()
            sel = np.nonzero(enc)[0]
            for shard in encode_shards(self.encoder, [keys[i] for i in sel],
                                       [texts[i] for i in sel], shard_rows=len(sel),
                                       batch_tokens=self.batch_tokens,
                                       tokens=self.options.tokens):
                entry = write_shard_file(self.root, self.encoder_id, shard.keys, shard.features,
                                         shard.ragged, shard.meta)
                rows.append(_result(self.encoder_id, entry, shard.windows,
                                    time.perf_counter() - t0))
                t0 = time.perf_counter()
        las = batch["laser"].to_numpy(dtype=bool)
        if self.laser is not None and self.laser_id is not None and las.any():
            t0 = time.perf_counter()
            sel = np.nonzero(las)[0]
            dtype = np.float16 if self.options.dtype == "float16" else np.float32
            vecs = self.laser.encode([texts[i] for i in sel]).astype(dtype)
            entry = write_shard_file(self.root, self.laser_id, [keys[i] for i in sel],
                                     {"vector": vecs})
            rows.append(_result(self.laser_id, entry, 0, time.perf_counter() - t0))
        return pd.DataFrame(rows, columns=_RESULT_COLUMNS)


def _result(encoder_id: str, entry: ShardEntry, windows: int, seconds: float) -> dict:
    return {"encoder_id": encoder_id, "file": entry.file, "rows": entry.rows,
            "bytes": entry.bytes, "sha256": entry.sha256, "features": ",".join(entry.features),
            "windows": windows, "seconds": seconds}


def featurize_corpus_ray(
    corpus_path: str | Path,
    store_path: str | Path | None,
    options: FeaturizeOptions,
    name: str | None = None,
    text_col: str | None = None,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
) -> dict:
    """Featurize a corpus on a Ray cluster into a store; the same summary as the local engine."""
    ray = import_ray()
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    gpus = float(options.gpus_per_worker or 0.0)
    if gpus < 0:
        raise RayEngineError(f"--gpus-per-worker must be 0 or more, not {gpus:g}")
    if options.workers is not None and options.workers <= 0:
        raise RayEngineError(f"--workers must be a positive integer, not {options.workers}")
    if options.device.startswith("cuda") and gpus == 0:
        raise RayEngineError("--device cuda with --engine ray needs --gpus-per-worker "
                             "(Ray hides GPUs from workers that did not ask for one)")
    start = time.perf_counter()
    corpus = open_corpus(corpus_path, text_col)
    name = check_name(name or corpus.path.stem, "dataset")
    rows, skipped = scan_corpus(corpus, options.strict)
    # The driver loads the encoder on CPU for its identity only (fingerprint, shapes), so bad
    # options fail here, before any worker starts.
    probe = load_encoder(replace(options, device="cpu"))
    encoder_id, fingerprint = probe.encoder_id, probe.fingerprint
    shapes, model_name = probe.feature_shapes(options.tokens), probe.name
    wanted = [*probe.features, *(["tokens"] if options.tokens else [])]
    n_layers = len(probe.layers)
    worker_options = replace(options, features=tuple(probe.features))
    del probe
    laser = load_laser(options, warn)
    laser_id = laser_fp = None
    laser_dim = 0
    if laser is not None:
        laser_id, laser_fp = laser_encoder_id(laser, options.dtype)
        laser_dim = laser.dim
        worker_options = replace(worker_options, laser_dir=str(laser.model_dir))
        del laser
    root = default_store_path(store_path)
    pass_start = time.perf_counter()
    counts = {"new": 0, "laser_new": 0, "windows": 0, "bytes": 0, "worker_seconds": 0.0}
    with StoreWriter(root, wait=options.wait) as writer:
        writer.ensure_encoder(encoder_id, fingerprint, options.dtype, shapes)
        if laser_id is not None:
            writer.ensure_encoder(laser_id, laser_fp, options.dtype, {"vector": [laser_dim]})
        table_tmp = writer.tmp / f"{name}.{uuid.uuid4().hex[:8]}.parquet.part"
        pending, unique, cached = _scan(corpus, writer, table_tmp, encoder_id, wanted, laser_id,
                                        options.chunk_rows, options.shard_rows)
        if pending.blocks:
            bar = tqdm(total=pending.encode, unit="text", desc="featurize (ray)",
                       disable=not progress, file=sys.stderr, dynamic_ncols=True)
            try:
                with _cluster(ray, options.address):
                    workers, initial = _workers(ray, options.workers, gpus, warn)
                    stream = _run(ray, root, worker_options, encoder_id, laser_id, pending,
                                  workers, initial, gpus)
                    # closing: a failed commit stops the workers now, not at garbage collection
                    with contextlib.closing(stream):
                        _commit_all(writer, stream, encoder_id, counts, bar)
            finally:
                bar.close()
        else:
            workers = 0
        entry = writer.commit_dataset(
            name, table_tmp, text_column=corpus.text_column, source=str(corpus.path),
            encoders=[encoder_id, *([laser_id] if laser_id else [])], skipped=skipped)
        # Files of worker attempts Ray retried were published but never committed.
        writer.remove_orphans()
    end = time.perf_counter()
    seconds, pass_seconds = end - start, end - pass_start
    return {
        "store": str(root),
        "dataset": name,
        "engine": "ray",
        "workers": workers,
        "encoder_id": encoder_id,
        "laser_encoder_id": laser_id,
        "model": model_name,
        "rows_read": rows,
        "skipped": skipped,
        "texts": rows - skipped,
        "unique": unique,
        "new": counts["new"],
        "cached": cached,
        "windows": counts["windows"],
        "laser_new": counts["laser_new"],
        "layers": n_layers,
        "features": sorted(shapes),
        "dataset_rows": entry.rows,
        "seconds": round(seconds, 3),
        "pass_seconds": round(pass_seconds, 3),
        "encode_seconds": round(counts["worker_seconds"], 3),
        "texts_per_s": round(counts["new"] / pass_seconds, 1),
        "bytes_written": counts["bytes"],
        "mb_per_s": round(counts["bytes"] / 1e6 / pass_seconds, 2),
    }


def _commit_all(writer: StoreWriter, stream: Iterator[dict], encoder_id: str, counts: dict,
                bar: tqdm) -> None:
    """Commit each shard entry as a worker reports it: a killed job keeps all committed so far."""
    for r in stream:
        entry = ShardEntry(file=r["file"], rows=int(r["rows"]), bytes=int(r["bytes"]),
                           sha256=r["sha256"], features=r["features"].split(","))
        writer.commit_shard(r["encoder_id"], entry)
        counts["bytes"] += entry.bytes
        counts["worker_seconds"] += float(r["seconds"])
        if r["encoder_id"] == encoder_id:
            counts["new"] += entry.rows
            counts["windows"] += int(r["windows"])
            bar.update(entry.rows)
        else:
            counts["laser_new"] += entry.rows


def _scan(corpus, writer: StoreWriter, table_tmp: Path, encoder_id: str, wanted: list[str],
          laser_id: str | None, chunk_rows: int, shard_rows: int
          ) -> tuple[_Pending, int, int]:
    """Write the dataset table; collect unique texts whose features are not committed yet."""
    store = writer.store()
    seen: set[str] = set()
    cached = 0
    parts: list[pd.DataFrame] = []
    pq_writer: pq.ParquetWriter | None = None
    try:
        for chunk in corpus.chunks(chunk_rows):
            cleaned = [_clean(v) for v in chunk[corpus.text_column].tolist()]
            keep = [i for i, t in enumerate(cleaned) if t is not None]
            texts = [cleaned[i] for i in keep]
            keys = [text_key(t) for t in texts]
            out = chunk.iloc[keep].reset_index(drop=True)
            out.insert(0, KEY_COLUMN, keys)
            table = pa.Table.from_pandas(out, preserve_index=False)
            if table.num_rows:
                if pq_writer is None:
                    pq_writer = pq.ParquetWriter(table_tmp, table.schema, compression="zstd")
                try:
                    table = table.cast(pq_writer.schema)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
                    raise CorpusError(f"{corpus.path}: a column changes type part-way through "
                                      f"the file ({exc})") from None
                pq_writer.write_table(table)
            ukeys, utexts = [], []
            for k, t in zip(keys, texts, strict=True):
                if k not in seen:
                    seen.add(k)
                    ukeys.append(k)
                    utexts.append(t)
            if not ukeys:
                continue
            enc = ~store.has(encoder_id, ukeys, wanted)
            las = (~store.has(laser_id, ukeys, ["vector"]) if laser_id is not None
                   else np.zeros(len(ukeys), dtype=bool))
            cached += int((~enc).sum())
            todo = enc | las
            if todo.any():
                idx = np.nonzero(todo)[0]
                parts.append(pd.DataFrame({KEY_COLUMN: [ukeys[i] for i in idx],
                                           "text": [utexts[i] for i in idx],
                                           "encode": enc[idx], "laser": las[idx]}))
    finally:
        if pq_writer is not None:
            pq_writer.close()
    if not parts:
        return _Pending([], 0, 0), len(seen), cached
    todo = pd.concat(parts, ignore_index=True)
    # Similar lengths in a block pad little; the longest go first so stragglers come early.
    order = np.argsort(-todo["text"].str.len().to_numpy(), kind="stable")
    todo = todo.iloc[order].reset_index(drop=True)
    blocks = [todo.iloc[s:s + shard_rows].reset_index(drop=True)
              for s in range(0, len(todo), shard_rows)]
    return (_Pending(blocks, int(todo["encode"].sum()), int(todo["laser"].sum())),
            len(seen), cached)


class _cluster:
    """Connect to (or start) Ray unless already connected; disconnect only what we connected."""

    def __init__(self, ray, address: str | None) -> None:
        self.ray = ray
        self.address = address
        self.started = False

    def __enter__(self) -> _cluster:
        ray = self.ray
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, logging_level=logging.WARNING,
                         log_to_driver=False, runtime_env={"env_vars": _QUIET_ENV})
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = self.address or "a local cluster"
                raise RayEngineError(f"cannot connect to Ray at {where}: "
                                     f"{_first_line(exc)}") from None
            self.started = True
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        for name in ("ray.data", "ray"):
            logging.getLogger(name).setLevel(logging.WARNING)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.ray.shutdown()


def _workers(ray, workers: int | None, gpus: float, warn: Callable[[str], None]
             ) -> tuple[int, int]:
    """(most actors, actors to start with): --workers, else as many as the cluster has GPUs (or
    CPUs) for. The pool starts with what fits now and may grow if an autoscaler adds nodes, so
    asking for more workers than the cluster holds never hangs the job."""
    resources = ray.cluster_resources()
    kind, need = ("GPU", gpus) if gpus > 0 else ("CPU", 1.0)
    fits = int(resources.get(kind, 0) // need)
    if workers is None:
        if fits == 0:
            raise RayEngineError(f"--gpus-per-worker {gpus:g} but the Ray cluster has "
                                 f"{resources.get('GPU', 0):g} GPUs")
        return fits, fits
    if fits < workers:
        warn(f"warning: the Ray cluster has room for {fits} of {workers} workers now "
             f"({resources.get(kind, 0):g} {kind}s); starting with {max(fits, 1)}")
    return workers, max(1, min(fits, workers))


def _run(ray, root: Path, options: FeaturizeOptions, encoder_id: str, laser_id: str | None,
         pending: _Pending, workers: int, initial: int, gpus: float) -> Iterator[dict]:
    """Stream the workers' shard entries back as they finish."""
    ds = ray.data.from_pandas(pending.blocks)
    results = ds.map_batches(
        ShardWorker,
        fn_constructor_kwargs={"root": str(root.resolve()), "options": options,
                               "encoder_id": encoder_id, "laser_id": laser_id},
        batch_size=options.shard_rows, batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers,
                                           initial_size=initial),
        num_cpus=1, num_gpus=gpus or None)
    try:
        for batch in results.iter_batches(batch_size=None, batch_format="pandas"):
            yield from batch.to_dict("records")
    except ray.exceptions.RayError as exc:
        raise RayEngineError(f"a Ray worker failed: {_worker_error(exc)}") from None


def _worker_error(exc: BaseException) -> str:
    """The first line of the user-facing cause inside Ray's wrappers."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, FeatstoreError):
            return str(cur)
        cur = getattr(cur, "cause", None) or cur.__cause__
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__
