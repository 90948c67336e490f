"""The featurize pass: corpus -> new unique texts -> encoder (and LASER) -> shards -> dataset table.

The encoder runs once per text, ever: texts whose features are already committed are skipped, and
duplicates within a corpus are encoded once. Work is committed shard by shard, so a killed pass
loses at most the shards in flight and a re-run finishes the job.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from featstore.featurize.batching import token_budget_batches
from featstore.featurize.corpus import ChunkChecker, Corpus, CorpusError, open_corpus
from featstore.featurize.encoder import LAYERED_FEATURES, Encoder, EncoderError, Windows
from featstore.featurize.laser import MISSING_LASER_HINT, LaserVectors, find_laser_dir
from featstore.featurize.writer import ShardCommitter
from featstore.store import (
    KEY_COLUMN,
    FeatstoreError,
    StoreWriter,
    check_name,
    default_store_path,
    normalize_text,
    text_key,
)


@dataclass
class FeaturizeOptions:
    """Everything that shapes a featurize pass; the encoder-defining part is its fingerprint."""

    model: str | None = None
    max_length: int | None = None
    stride: int | None = None
    truncate: bool = False
    layers: str | list[int] = "all"
    features: tuple[str, ...] | None = None  # None: cls, mean, max, and pooler if the model has one
    tokens: bool = False
    laser: bool = True
    laser_dir: str | None = None
    device: str = "auto"
    batch_tokens: int | None = None
    dtype: str = "float16"
    compute_dtype: str = "auto"
    strict: bool = False
    trust_remote_code: bool = False
    wait: bool = False
    shard_rows: int = 2048
    chunk_rows: int = 16384
    engine: str = "local"  # or "ray": featstore.featurize.ray_engine
    address: str | None = None  # Ray cluster address (None: $RAY_ADDRESS or a local cluster)
    workers: int | None = None  # Ray actors (None: one per GPU, or per CPU, of the cluster)
    gpus_per_worker: float = 0.0

    @classmethod
    def from_fingerprint(cls, fp: dict, **overrides: object) -> FeaturizeOptions:
        """Options that reproduce the encoder of an existing fingerprint."""
        opts = cls(model=fp["model"], max_length=fp["max_length"], stride=fp["stride"],
                   truncate=fp["truncate"], layers=list(fp["layers"]), dtype=fp["dtype"],
                   laser=False)
        return replace(opts, **overrides)


@dataclass
class _Counts:
    rows: int = 0
    skipped: int = 0
    cached: int = 0
    new: int = 0
    windows: int = 0
    laser_new: int = 0
    duplicates: int = 0
    seen: set[str] = field(default_factory=set)
    laser_seen: set[str] = field(default_factory=set)


def load_encoder(options: FeaturizeOptions) -> Encoder:
    features = options.features
    enc = Encoder(options.model, device=options.device, max_length=options.max_length,
                  stride=options.stride, truncate=options.truncate, layers=options.layers,
                  features=features or LAYERED_FEATURES, dtype=options.dtype,
                  compute_dtype=options.compute_dtype,
                  trust_remote_code=options.trust_remote_code)
    if features is None and enc.has_pooler:
        enc.features = [*enc.features, "pooler"]
    return enc


def load_laser(options: FeaturizeOptions, warn: Callable[[str], None]) -> LaserVectors | None:
    if not options.laser:
        return None
    laser_dir = find_laser_dir(options.laser_dir)
    if laser_dir is None:
        warn(f"warning: {MISSING_LASER_HINT}; continuing without LASER vectors")
        return None
    device = options.device if options.device != "auto" else "cpu"
    return LaserVectors(laser_dir, device=device)


def laser_encoder_id(laser: LaserVectors, dtype: str) -> tuple[str, dict]:
    fp = {**laser.fingerprint, "dtype": dtype}
    digest = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()
    return f"laser-{digest[:12]}", fp


def scan_corpus(corpus: Corpus, strict: bool) -> tuple[int, int]:
    """(rows, rows without text) over the whole file: fails before anything is written."""
    rows = skipped = 0
    checker = ChunkChecker(corpus)
    for chunk in corpus.chunks():
        texts = chunk[corpus.text_column]
        keep = []
        for i, value in enumerate(texts.tolist()):
            if _clean(value) is None:
                if strict:
                    raise CorpusError(f"{corpus.path} row {rows + i + 1}: empty or missing text "
                                      f"in column {corpus.text_column!r} (--strict)")
                skipped += 1
            else:
                keep.append(i)
        checker.check(chunk, rows, keep)
        rows += len(chunk)
    if rows - skipped == 0:
        what = "has no rows" if rows == 0 else f"has no texts in column {corpus.text_column!r}"
        raise CorpusError(f"{corpus.path}: corpus {what}")
    return rows, skipped


def _clean(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = normalize_text(value if isinstance(value, str) else str(value))
    return text or None


def featurize_corpus(
    corpus_path: str | Path,
    store_path: str | Path | None,
    options: FeaturizeOptions,
    name: str | None = None,
    text_col: str | None = None,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
) -> dict:
    """Featurize a corpus file into a store and record it as a dataset; returns a summary."""
    if options.engine == "ray":
        from featstore.featurize.ray_engine import featurize_corpus_ray

        return featurize_corpus_ray(corpus_path, store_path, options, name=name,
                                    text_col=text_col, progress=progress, warn=warn)
    if options.engine != "local":
        raise FeatstoreError(f"--engine must be local or ray, not {options.engine!r}")
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    start = time.perf_counter()
    corpus = open_corpus(corpus_path, text_col)
    name = check_name(name or corpus.path.stem, "dataset")
    rows, skipped = scan_corpus(corpus, options.strict)
    encoder = load_encoder(options)
    laser = load_laser(options, warn)
    root = default_store_path(store_path)
    pass_start = time.perf_counter()
    with StoreWriter(root, wait=options.wait) as writer:
        run = _Pass(writer, encoder, laser, options, progress, total=rows - skipped)
        table_tmp = writer.tmp / f"{name}.{uuid.uuid4().hex[:8]}.parquet.part"
        pq_writer: pq.ParquetWriter | None = None
        try:
            for chunk in corpus.chunks(options.chunk_rows):
                table = run.chunk(chunk, corpus.text_column, corpus.path)
                if table.num_rows == 0:
                    continue
                if pq_writer is None:
                    pq_writer = pq.ParquetWriter(table_tmp, table.schema, compression="zstd")
                try:
                    table = table.cast(pq_writer.schema)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
                    raise CorpusError(f"{corpus.path}: a column changes type part-way through "
                                      f"the file ({exc})") from None
                pq_writer.write_table(table)
            run.finish()
        finally:
            run.close()
            if pq_writer is not None:
                pq_writer.close()
        entry = writer.commit_dataset(
            name, table_tmp, text_column=corpus.text_column, source=str(corpus.path),
            encoders=run.encoder_ids, skipped=skipped)
    end = time.perf_counter()
    seconds, pass_seconds = end - start, end - pass_start
    c = run.counts
    return {
        "store": str(root),
        "dataset": name,
        "engine": "local",
        "encoder_id": run.encoder_id,
        "laser_encoder_id": run.laser_id,
        "model": encoder.name,
        "rows_read": rows,
        "skipped": skipped,
        "texts": rows - skipped,
        "unique": len(c.seen),
        "new": c.new,
        "cached": c.cached,
        "windows": c.windows,
        "laser_new": c.laser_new,
        "layers": len(encoder.layers),
        "features": sorted(encoder.feature_shapes(options.tokens)),
        "dataset_rows": entry.rows,
        "seconds": round(seconds, 3),
        "pass_seconds": round(pass_seconds, 3),
        "encode_seconds": round(run.encode_seconds, 3),
        "texts_per_s": round(c.new / pass_seconds, 1),
        "bytes_written": run.committer.bytes_written,
        "mb_per_s": round(run.committer.bytes_written / 1e6 / pass_seconds, 2),
    }


def featurize_texts(texts: Sequence[str], store_path: str | Path | None,
                    options: FeaturizeOptions, progress: bool = False) -> str:
    """Store features for any of `texts` not stored yet (no dataset is recorded); the encoder id."""
    encoder = load_encoder(options)
    with StoreWriter(default_store_path(store_path), wait=options.wait) as writer:
        run = _Pass(writer, encoder, None, options, progress, total=len(texts))
        try:
            run.chunk(pd.DataFrame({"text": list(texts)}), "text", Path("<texts>"))
            run.finish()
        finally:
            run.close()
    return run.encoder_id


@dataclass
class EncodedShard:
    """One shard's worth of encoded texts, ready for `write_shard_file`."""

    keys: list[str]
    features: dict[str, np.ndarray]
    ragged: dict[str, tuple[np.ndarray, np.ndarray]] | None
    meta: dict[str, np.ndarray]
    windows: int


def default_batch_tokens(encoder: Encoder, batch_tokens: int | None) -> int:
    """--batch-tokens, else a budget that suits the device."""
    return batch_tokens or (16384 if encoder.device.type == "cuda" else 4096)


def encode_shards(encoder: Encoder, keys: list[str], texts: list[str], *, shard_rows: int,
                  batch_tokens: int, tokens: bool = False) -> Iterator[EncodedShard]:
    """Window, batch and encode texts; yield shards of at most `shard_rows` texts.

    Shared by the local and the Ray engine, so both store the same values for a text.
    """
    win = encoder.windows(texts)
    lengths = win.lengths
    # Longest window per text orders texts, so each shard's batches pad little.
    text_len = np.zeros(len(texts), dtype=np.int64)
    np.maximum.at(text_len, win.owner, lengths)
    text_order = np.argsort(-text_len, kind="stable")
    window_of_text: list[list[int]] = [[] for _ in texts]
    for w, t in enumerate(win.owner.tolist()):
        window_of_text[t].append(w)
    for s in range(0, len(text_order), shard_rows):
        group = text_order[s:s + shard_rows]
        wins = np.array([w for t in group for w in window_of_text[t]], dtype=np.int64)
        feats, ragged, n_windows = encode_group(encoder, win, wins, group, batch_tokens, tokens)
        meta = {"n_windows": n_windows,
                "n_tokens": np.array([sum(int(lengths[w]) for w in window_of_text[t])
                                      for t in group], dtype=np.int32)}
        yield EncodedShard([keys[t] for t in group], feats, ragged, meta, len(wins))


def encode_group(encoder: Encoder, win: Windows, wins: np.ndarray, group: np.ndarray,
                 batch_tokens: int, tokens: bool = False
                 ) -> tuple[dict[str, np.ndarray], dict | None, np.ndarray]:
    """Forward the windows of a group of texts; average windows per text (max of max)."""
    owner_local = {int(t): i for i, t in enumerate(group)}
    owners = np.array([owner_local[int(win.owner[w])] for w in wins], dtype=np.int64)
    lengths = win.lengths[wins]
    per_window: dict[str, np.ndarray] = {}
    tokens_of_window: list[np.ndarray | None] = [None] * len(wins)
    for batch in token_budget_batches(lengths, batch_tokens,
                                      same_length=not encoder.padding_invariant):
        feats, toks = encoder.forward([win.input_ids[w] for w in wins[batch]], tokens=tokens)
        for name, arr in feats.items():
            if name not in per_window:
                per_window[name] = np.empty((len(wins), *arr.shape[1:]), dtype=arr.dtype)
            per_window[name][batch] = arr
        if toks is not None:
            for j, b in enumerate(batch.tolist()):
                tokens_of_window[b] = toks[j]
    n = len(group)
    n_windows = np.bincount(owners, minlength=n).astype(np.int32)
    if len(wins) == n and np.array_equal(owners, np.arange(n)):
        out = per_window
    else:
        out = {}
        for name, arr in per_window.items():
            if name == "max":
                agg = np.full((n, *arr.shape[1:]), -np.inf, dtype=np.float32)
                np.maximum.at(agg, owners, arr.astype(np.float32))
            else:
                agg = np.zeros((n, *arr.shape[1:]), dtype=np.float32)
                np.add.at(agg, owners, arr.astype(np.float32))
                agg /= n_windows.reshape(-1, *([1] * (arr.ndim - 1)))
            out[name] = agg.astype(arr.dtype)
    ragged = None
    if tokens:
        by_text: list[list[np.ndarray]] = [[] for _ in range(n)]
        for w, o in enumerate(owners.tolist()):
            by_text[o].append(tokens_of_window[w])
        rows = [np.concatenate(parts) for parts in by_text]
        offsets = np.zeros(n + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(r) for r in rows])
        ragged = {"tokens": (np.concatenate(rows), offsets)}
    return out, ragged, n_windows


class _Pass:
    """One locked featurize pass over chunks of rows."""

    def __init__(self, writer: StoreWriter, encoder: Encoder, laser: LaserVectors | None,
                 options: FeaturizeOptions, progress: bool, total: int) -> None:
        self.writer = writer
        self.encoder = encoder
        self.laser = laser
        self.options = options
        self.tokens = options.tokens
        self.batch_tokens = default_batch_tokens(encoder, options.batch_tokens)
        self.counts = _Counts()
        self.encode_seconds = 0.0
        self.encoder_id = encoder.encoder_id
        self.wanted = [*encoder.features, *(["tokens"] if self.tokens else [])]
        writer.ensure_encoder(self.encoder_id, encoder.fingerprint, encoder.dtype,
                              encoder.feature_shapes(self.tokens))
        self.laser_id = None
        if laser is not None:
            self.laser_id, fp = laser_encoder_id(laser, options.dtype)
            writer.ensure_encoder(self.laser_id, fp, options.dtype, {"vector": [laser.dim]})
        self.encoder_ids = [self.encoder_id, *([self.laser_id] if self.laser_id else [])]
        self.store = writer.store()
        self.committer = ShardCommitter(writer)
        self.bar = tqdm(total=total, unit="text", desc="featurize", disable=not progress,
                        file=sys.stderr, dynamic_ncols=True, smoothing=0.1)

    def chunk(self, chunk: pd.DataFrame, text_column: str, path: Path) -> pa.Table:
        """Encode what is new in a chunk; return its dataset rows (key first)."""
        values = chunk[text_column].tolist()
        cleaned = [_clean(v) for v in values]
        keep = [i for i, t in enumerate(cleaned) if t is not None]
        texts = [cleaned[i] for i in keep]
        keys = [text_key(t) for t in texts]
        self.counts.rows += len(values)
        self._encode_new(keys, texts)
        if self.laser is not None:
            self._laser_new(keys, texts)
        self.bar.update(len(keys))
        out = chunk.iloc[keep].reset_index(drop=True)
        out.insert(0, KEY_COLUMN, keys)
        return pa.Table.from_pandas(out, preserve_index=False)

    def _new(self, keys: list[str], texts: list[str], encoder_id: str, features: list[str],
             seen: set[str]) -> tuple[list[str], list[str], int]:
        present = self.store.has(encoder_id, keys, features)
        new_keys, new_texts, cached = [], [], 0
        for k, t, p in zip(keys, texts, present, strict=True):
            if k in seen:
                continue
            seen.add(k)
            if p:
                cached += 1
            else:
                new_keys.append(k)
                new_texts.append(t)
        return new_keys, new_texts, cached

    def _encode_new(self, keys: list[str], texts: list[str]) -> None:
        new_keys, new_texts, cached = self._new(keys, texts, self.encoder_id, self.wanted,
                                                self.counts.seen)
        self.counts.cached += cached
        if not new_texts:
            return
        t0 = time.perf_counter()
        for shard in encode_shards(self.encoder, new_keys, new_texts,
                                   shard_rows=self.options.shard_rows,
                                   batch_tokens=self.batch_tokens, tokens=self.tokens):
            self.encode_seconds += time.perf_counter() - t0
            self.counts.windows += shard.windows
            self.committer.submit(self.encoder_id, shard.keys, shard.features, shard.ragged,
                                  shard.meta)
            self.counts.new += len(shard.keys)
            self.bar.set_postfix_str(f"encoded {self.counts.new}", refresh=False)
            t0 = time.perf_counter()

    def _laser_new(self, keys: list[str], texts: list[str]) -> None:
        assert self.laser is not None and self.laser_id is not None
        new_keys, new_texts, _ = self._new(keys, texts, self.laser_id, ["vector"],
                                           self.counts.laser_seen)
        step = self.options.shard_rows
        dtype = np.float16 if self.options.dtype == "float16" else np.float32
        for s in range(0, len(new_texts), step):
            vecs = self.laser.encode(new_texts[s:s + step]).astype(dtype)
            self.committer.submit(self.laser_id, new_keys[s:s + step], {"vector": vecs})
            self.counts.laser_new += len(vecs)

    def finish(self) -> None:
        """Wait until every shard is committed (raises what the writer thread hit)."""
        self.committer.close()

    def close(self) -> None:
        """On any exit: let in-flight shards commit, stop the thread, close the bar."""
        with contextlib.suppress(Exception):  # the original error is already propagating
            self.committer.close()
        self.bar.close()


__all__ = ["EncoderError", "FeaturizeOptions", "featurize_corpus", "featurize_texts"]
