"""The Ray engine: the local engine's work spread over a Ray Data actor pool, one encoder per
actor.

The driver (`featstore.featurize.driver`) reads the corpus, writes the dataset table and finds the
texts not yet committed, exactly as for the local engine, and submits them here. At `finish`,
actors encode blocks of those texts with the same shard-encoding functions and publish each shard
into the store without the lock (`write_shard_file`); they send back only the shard's manifest
entry. The driver holds the store's lock for the whole job and commits each entry as it arrives,
so a killed job keeps every shard committed so far, and its published-but-uncommitted files are
orphans that the next writer deletes. The store must therefore sit on a filesystem every node
sees at the same path.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from featstore.featurize.engine import EngineReport, opened
from featstore.featurize.errors import LaserError, RayEngineError
from featstore.featurize.options import FeaturizeOptions
from featstore.featurize.process_memory import keep_freed_memory
from featstore.featurize.shard_encoding import (
    default_batch_tokens,
    encode_shards,
    laser_shards,
)
from featstore.featurize.sources import (
    ENCODER,
    PassSources,
    SourceSpec,
    check_same_encoder,
    laser_spec,
    load_encoder,
    load_laser,
)
from featstore.store import KEY_COLUMN, FeatstoreError, StoreWriter, fingerprints_match
from featstore.store.manifest import ShardEntry
from featstore.store.writer import write_shard_file

RAY_MISSING = ("--engine ray needs Ray Data, which is not installed: "
               "pip install 'ray[data]' (or pip install 'featstore[ray]')")
_RESULT_COLUMNS = ["source", "file", "rows", "bytes", "sha256", "features", "attrs",
                   "windows", "seconds"]
_QUIET_ENV = {"TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false",
              "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def import_ray():
    """Ray is optional: imported only for --engine ray, with a one-line hint when missing."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RayEngineError(RAY_MISSING) from None
    return ray


class ShardWorker:
    """Ray actor: loads the encoder (and LASER) once, turns each block into committed-ready shards.

    Returns one row per shard file written (its manifest entry), never the vectors themselves.
    """

    def __init__(self, root: str, options: FeaturizeOptions, ids: dict[str, str],
                 encoder: SourceSpec, laser: SourceSpec | None, texts: int | None = None
                 ) -> None:
        keep_freed_memory()  # the actor's process is featstore's
        self.root = root
        self.options = options
        self.ids = ids
        self.encoder = load_encoder(options)
        self.encoder.prepare(texts)  # `texts`: the pass's encoder texts, over all workers
        check_same_encoder(self.encoder, encoder)
        self.batch_tokens = default_batch_tokens(self.encoder, options.batch_tokens)
        self.laser = None
        if laser is not None:
            self.laser = load_laser(options, warn=lambda msg: None)
            if self.laser is None or not fingerprints_match(
                    laser_spec(self.laser, options.dtype).fingerprint, laser.fingerprint):
                raise LaserError("a worker cannot load the driver's LASER models: every node "
                                 "must see the same --laser-dir")

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows: list[dict] = []
        only_of = batch["only"].astype(str).to_numpy() if "only" in batch.columns else \
            np.full(len(batch), "", dtype=object)
        pairs = zip(batch["source"].tolist(), only_of.tolist(), strict=True)
        for role, only in sorted(set(pairs)):
            sel = np.nonzero((batch["source"].to_numpy() == role) & (only_of == only))[0]
            keys = [batch[KEY_COLUMN].iat[i] for i in sel]
            texts = [batch["text"].iat[i] for i in sel]
            t0 = time.perf_counter()
            if role == ENCODER:
                shards = encode_shards(self.encoder, keys, texts, shard_rows=len(sel),
                                       batch_tokens=self.batch_tokens, tokens=self.options.tokens,
                                       only=only.split(",") if only else None)
            elif self.laser is None:
                raise LaserError("a worker was sent LASER texts without LASER models")
            else:
                shards = laser_shards(self.laser, keys, texts, shard_rows=len(sel),
                                      dtype=self.options.dtype)
            for shard in shards:
                entry = write_shard_file(self.root, self.ids[role], shard.keys, shard.features,
                                         shard.ragged, shard.meta, shard.attrs)
                rows.append(_result(role, entry, shard.windows, time.perf_counter() - t0))
                t0 = time.perf_counter()
        return pd.DataFrame(rows, columns=_RESULT_COLUMNS)


def _result(role: str, entry: ShardEntry, windows: int, seconds: float) -> dict:
    return {"source": role, "file": entry.file, "rows": entry.rows, "bytes": entry.bytes,
            "sha256": entry.sha256, "features": ",".join(entry.features),
            "attrs": json.dumps(entry.attrs), "windows": windows, "seconds": seconds}


class RayEngine:
    """Collects the new texts the driver submits; `finish` encodes them on the cluster."""

    def __init__(self, options: FeaturizeOptions, warn: Callable[[str], None]) -> None:
        self.ray = import_ray()
        gpus = float(options.gpus_per_worker or 0.0)
        if gpus < 0:
            raise RayEngineError(f"--gpus-per-worker must be 0 or more, not {gpus:g}")
        if options.workers is not None and options.workers <= 0:
            raise RayEngineError(f"--workers must be a positive integer, not {options.workers}")
        if options.device.startswith("cuda") and gpus == 0:
            raise RayEngineError("--device cuda with --engine ray needs --gpus-per-worker "
                                 "(Ray hides GPUs from workers that did not ask for one)")
        self.gpus = gpus
        self.options = options
        self.warn = warn
        self.report = EngineReport(workers=0)
        self._sources: PassSources | None = None
        self._parts: list[pd.DataFrame] = []
        self._writer: StoreWriter | None = None
        self._ids: dict[str, str] = {}
        self._progress: Callable[[int], None] = lambda n: None

    def open(self, writer: StoreWriter, sources: PassSources, ids: dict[str, str],
             progress: Callable[[int], None]) -> None:
        # The driver loaded the models for their identity only; actors load their own.
        sources.loaded_encoder = sources.loaded_laser = None
        self.options = sources.options or self.options
        self._sources = sources
        self._writer, self._ids, self._progress = writer, ids, progress

    def submit(self, role: str, keys: list[str], texts: list[str],
               only: list[str] | None = None) -> None:
        if keys:
            self._parts.append(pd.DataFrame({KEY_COLUMN: keys, "text": texts, "source": role,
                                             "only": ",".join(only or [])}))

    def _blocks(self) -> list[pd.DataFrame]:
        """Blocks of one source (and one set of features to store) each; similar lengths
        together pad little, and the longest go first so stragglers come early."""
        todo = pd.concat(self._parts, ignore_index=True)
        todo["_len"] = -todo["text"].str.len()
        todo = todo.sort_values(["source", "_len"], kind="stable").drop(columns="_len")
        step = self.options.shard_rows
        blocks = []
        for _, part in todo.groupby(["source", "only"], sort=True):
            part = part.reset_index(drop=True)
            blocks += [part.iloc[s:s + step].reset_index(drop=True)
                       for s in range(0, len(part), step)]
        return blocks

    def finish(self) -> EngineReport:
        if not self._parts:
            return self.report
        writer, pass_sources = opened(self._writer, "ray"), opened(self._sources, "ray")
        ray = self.ray
        blocks = self._blocks()
        with _cluster(ray, self.options.address):
            workers, initial = _workers(ray, self.options.workers, self.gpus, self.warn)
            self.report.workers = workers
            stream = _run(ray, writer.root, self.options, self._ids, pass_sources, blocks,
                          workers, initial, self.gpus)
            # closing: a failed commit stops the workers now, not at garbage collection
            with contextlib.closing(stream):
                self._commit_all(writer, stream)
        return self.report

    def _commit_all(self, writer: StoreWriter, stream: Iterator[dict]) -> None:
        """Commit each shard entry as a worker reports it: a killed job keeps all so far."""
        for r in stream:
            entry = ShardEntry(file=r["file"], rows=int(r["rows"]), bytes=int(r["bytes"]),
                               sha256=r["sha256"], features=r["features"].split(","),
                               attrs=json.loads(r["attrs"]))
            writer.commit_shard(self._ids[r["source"]], entry)
            self.report.bytes_written += entry.bytes
            self.report.encode_seconds += float(r["seconds"])
            if r["source"] == ENCODER:
                self.report.new += entry.rows
                self.report.count_compute_dtype(entry.attrs, entry.rows)
                self.report.windows += int(r["windows"])
                self._progress(entry.rows)
            else:
                self.report.laser_new += entry.rows

    def close(self) -> None:
        self._parts.clear()


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


def _run(ray, root: Path, options: FeaturizeOptions, ids: dict[str, str], sources: PassSources,
         blocks: list[pd.DataFrame], workers: int, initial: int, gpus: float) -> Iterator[dict]:
    """Stream the workers' shard entries back as they finish."""
    ds = ray.data.from_pandas(blocks)
    results = ds.map_batches(
        ShardWorker,
        fn_constructor_kwargs={"root": str(root.resolve()), "options": options, "ids": ids,
                               "encoder": sources.encoder, "laser": sources.laser,
                               "texts": sum(int((b["source"] == ENCODER).sum())
                                            for b in blocks)},
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
