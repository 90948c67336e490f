"""The featurize pass, once for every engine: corpus -> keys -> new texts -> engine -> dataset.

The encoder runs once per text, ever: texts whose features are already committed are skipped, and
duplicates within a corpus are encoded once. The driver reads and checks the whole corpus before
writing anything, keys every text, finds what the store lacks, writes the dataset table and the
summary; an engine (local or Ray) only turns the new texts into committed shards, shard by shard,
so a killed pass loses at most the shards in flight and a re-run finishes the job.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from tqdm import tqdm

from featstore.featurize.corpus import CorpusScan, open_corpus, scan_corpus
from featstore.featurize.engine import Engine, EngineReport
from featstore.featurize.errors import CorpusError
from featstore.featurize.local_engine import LocalEngine
from featstore.featurize.model_names import BUNDLED
from featstore.featurize.options import FeaturizeOptions
from featstore.featurize.sources import (
    CROSS,
    ENCODER,
    LASER,
    PassSources,
    find_stored_encoder,
    identify_sources,
    same_encoder,
)
from featstore.store import (
    KEY_COLUMN,
    PAIR_KEY_COLUMNS,
    FeatstoreError,
    Store,
    StoreWriter,
    check_name,
    clean_text,
    default_store_path,
    fingerprint_id,
    pair_key,
    short_model_name,
    text_key,
)
from featstore.store.tables import same_source

Warn = Callable[[str], None]


@dataclass
class FeaturizeSummary:
    """What a pass did; `to_dict()` is the `featurize --json` output."""

    store: str
    dataset: str | None
    engine: str
    workers: int | None
    encoder_id: str
    laser_encoder_id: str | None
    model: str
    rows_read: int
    skipped: int
    texts: int
    unique: int
    new: int
    cached: int
    windows: int
    compute_dtypes: dict[str, int]  # the new rows per precision the encoder computed in
    laser_new: int
    layers: int
    features: list[str]
    dataset_rows: int
    seconds: float
    pass_seconds: float
    encode_seconds: float
    load_seconds: float  # of pass_seconds: loading the model and readying its runtime
    texts_per_s: float
    bytes_written: int
    mb_per_s: float
    pairs: int = 0  # rows of a pair dataset (each holds two texts)
    cross_encoder_id: str | None = None  # the pairs' joint encoding, with --cross
    cross_new: int = 0
    cross_cached: int = 0
    cross_seconds: float = 0.0
    pairs_per_s: float = 0.0  # pairs jointly encoded per second of that encoding

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class KeyedChunk:
    """A chunk's rows with text, key columns first; the texts to encode with their keys (a
    pair's two sides, one after the other), and for a pair corpus each row's pair and key."""

    rows: pd.DataFrame
    keys: list[str]
    texts: list[str]
    pair_keys: list[str] | None = None
    pairs: list[tuple[str, str]] | None = None


def keyed_rows(chunk: pd.DataFrame, text_column: str) -> KeyedChunk:
    """The rows of a chunk that hold text, `_key` first; their keys and cleaned texts."""
    cleaned = [clean_text(v) for v in chunk[text_column].tolist()]
    keep = [i for i, t in enumerate(cleaned) if t is not None]
    texts = [cleaned[i] for i in keep]
    keys = [text_key(t) for t in texts]
    rows = chunk.iloc[keep].reset_index(drop=True)
    rows.insert(0, KEY_COLUMN, keys)
    return KeyedChunk(rows, keys, texts)


def keyed_pairs(chunk: pd.DataFrame, columns: tuple[str, ...]) -> KeyedChunk:
    """A pair corpus's chunk (both sides checked by the scan): `_key` (the pair's), `_key_a`
    and `_key_b` first; both sides' texts, and each row's pair."""
    a = [clean_text(v) or "" for v in chunk[columns[0]].tolist()]
    b = [clean_text(v) or "" for v in chunk[columns[1]].tolist()]
    ka, kb = [text_key(t) for t in a], [text_key(t) for t in b]
    pk = [pair_key(x, y) for x, y in zip(ka, kb, strict=True)]
    rows = chunk.reset_index(drop=True)
    for i, (name, values) in enumerate(((KEY_COLUMN, pk), (PAIR_KEY_COLUMNS[0], ka),
                                        (PAIR_KEY_COLUMNS[1], kb))):
        rows.insert(i, name, values)
    return KeyedChunk(rows, ka + kb, a + b, pk, list(zip(a, b, strict=True)))


class DatasetTableWriter:
    """The dataset table, written chunk by chunk to a temporary Parquet file under tmp/, in the
    schema the corpus scan settled for the whole file."""

    def __init__(self, tmp_dir: Path, name: str, scan: CorpusScan, source: Path) -> None:
        self.path = tmp_dir / f"{name}.{uuid.uuid4().hex[:8]}.parquet.part"
        self.scan = scan
        self.source = source
        self._writer: pq.ParquetWriter | None = None

    def write(self, rows: pd.DataFrame) -> None:
        if not len(rows):
            return
        try:
            table = self.scan.table(rows)
        except CorpusError as exc:
            raise CorpusError(f"{self.source}: {exc}") from None
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def discard(self) -> None:
        """A pass that failed leaves no part-written table behind (a killed one leaves it to
        the next writer, which removes it)."""
        self.close()
        self.path.unlink(missing_ok=True)


class NewTextFinder:
    """Which texts of one source the store lacks, and which of the wanted features each lacks;
    each key is reported once per pass."""

    def __init__(self, store: Store, source_id: str, wanted: list[str]) -> None:
        self.store = store
        self.source_id = source_id
        self.wanted = wanted
        self.seen: set[str] = set()
        self.cached = 0

    def new(self, keys: list[str], texts: list[str]
            ) -> list[tuple[list[str] | None, list[str], list[str]]]:
        """(features to store, keys, texts) per group of texts lacking the same features;
        None: all of them. A text already holding some features gets only the others, so
        committed vectors are never written again."""
        first = []
        for i, k in enumerate(keys):
            if k not in self.seen:
                self.seen.add(k)
                first.append(i)
        fresh = [keys[i] for i in first]
        known = self.source_id in self.store.manifest.encoders  # else registered, not committed
        has = {f: self.store.has(self.source_id, fresh, [f]) if known
               else np.zeros(len(fresh), dtype=bool) for f in self.wanted}
        groups: dict[tuple[str, ...], list[int]] = {}
        for j, i in enumerate(first):
            lacking = tuple(f for f in self.wanted if not has[f][j])
            if lacking:
                groups.setdefault(lacking, []).append(i)
            else:
                self.cached += 1
        return [(None if len(lacking) == len(self.wanted) else list(lacking),
                 [keys[i] for i in idx], [texts[i] for i in idx])
                for lacking, idx in groups.items()]


def make_engine(options: FeaturizeOptions, warn: Warn) -> Engine:
    """The engine `options.engine` names; built first, so its checks (Ray installed, sensible
    worker settings) fail before any model loads."""
    if options.cross and options.engine != "local":
        raise FeatstoreError("--cross encodes pairs on the local engine; drop --engine "
                             f"{options.engine} (the pairs' texts alone can use it)")
    if options.engine == "local":
        return LocalEngine(options)
    if options.engine == "ray":
        from featstore.featurize.ray_engine import RayEngine

        return RayEngine(options, warn)
    raise FeatstoreError(f"--engine must be local or ray, not {options.engine!r}")


def register_sources(writer: StoreWriter, sources: PassSources) -> dict[str, str]:
    """Each source's id in the store: the one holding its fingerprint, else a new one."""
    store = writer.store()
    ids = {}
    for spec in sources.specs:
        source_id = find_stored_encoder(store, spec.fingerprint)
        fingerprint = spec.fingerprint
        if source_id is None:
            base = source_id = fingerprint_id(spec.label, spec.fingerprint)
            n = 1
            while source_id in store.manifest.encoders:  # only ever after a hand edit
                n += 1
                source_id = f"{base}-{n}"
        else:  # the same files recorded by another path keep their id and record
            fingerprint = store.manifest.encoders[source_id].fingerprint
        # committed with the first shard, so a pass refused before it leaves no trace
        writer.ensure_encoder(source_id, fingerprint, spec.dtype, spec.shapes, defer=True)
        ids[spec.role] = source_id
    return ids


@dataclass
class _PassResult:
    ids: dict[str, str]
    report: EngineReport
    unique: int
    cached: int
    cross_cached: int = 0


def _run_pass(writer: StoreWriter, engine: Engine, sources: PassSources,
              chunks: Iterable[KeyedChunk], table: DatasetTableWriter | None,
              total: int, progress: bool) -> _PassResult:
    """Key every chunk, record its rows, and hand each source's new texts (the cross source:
    new pairs) to the engine."""
    ids = register_sources(writer, sources)
    store = writer.store()
    finders = {spec.role: NewTextFinder(store, ids[spec.role], spec.wanted)
               for spec in sources.specs}
    # with a cross source the bar counts each pair's joint encoding beside the texts
    cross = CROSS in finders
    bar = tqdm(total=total, unit="item" if cross else "text",
               desc="featurize texts+pairs" if cross else "featurize", disable=not progress,
               file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
    try:
        engine.open(writer, sources, ids, bar.update)
        for keyed in chunks:
            if table is not None:
                table.write(keyed.rows)
            for role, finder in finders.items():
                if role == CROSS:
                    groups = finder.new(keyed.pair_keys or [], keyed.pairs or [])
                else:
                    groups = finder.new(keyed.keys, keyed.texts)
                todo = sum(len(k) for _, k, _ in groups)
                if todo and writer.read_only:
                    raise FeatstoreError(f"store {writer.root} is read-only; featurize needs "
                                         f"write access to add {todo} new text(s)")
                if role == ENCODER:
                    bar.update(len(keyed.keys) - todo)
                elif role == CROSS:
                    bar.update(len(keyed.pair_keys or []) - todo)
                for only, new_keys, new_texts in groups:
                    engine.submit(role, new_keys, new_texts, only)
        report = engine.finish()
        writer.commit_pending()
    finally:
        engine.close()
        if table is not None:
            table.close()
        bar.close()
    enc = finders[ENCODER]
    return _PassResult(ids, report, unique=len(enc.seen), cached=enc.cached,
                       cross_cached=finders[CROSS].cached if CROSS in finders else 0)


def with_stored_model(options: FeaturizeOptions, root: Path) -> FeaturizeOptions:
    """`--model NAME` where NAME is no directory here, no hub id with an owner and not the
    bundled model, but the short name of a model this store's encoder was computed from
    (`all-mpnet-base-v2` for `/models/all-mpnet-base-v2`): that model, as the store records it;
    refused with the candidates where several encoders answer to it."""
    model = options.model
    if model is None or "/" in model or model in BUNDLED or Path(model).expanduser().is_dir() \
            or not (root / "manifest.json").is_file():
        return options
    try:
        encoders = Store(root).manifest.encoders
    except FeatstoreError:
        return options
    found = {str(e.fingerprint.get("model")) for e in encoders.values() if e.kind == "encoder"
             and short_model_name(e.fingerprint.get("model")).lower() == model.lower()}
    if len(found) > 1:
        raise FeatstoreError(f"--model {model} names several models of store {root} "
                             f"({', '.join(sorted(found))}); pass one of them")
    return replace(options, model=found.pop()) if found else options


def with_stored_length(options: FeaturizeOptions, root: Path, fingerprint: dict
                       ) -> FeaturizeOptions:
    """A pass that leaves --max-length out, whose encoder (`fingerprint`) the store lacks but
    holds with the same files at another window length (a store made before a
    sentence-transformers model's own length was honoured), keeps that length and stride: one
    model stays one encoder. Otherwise the options are returned as they are."""
    if options.max_length is not None or options.expect is not None or \
            not (root / "manifest.json").is_file():
        return options
    try:
        store = Store(root)
    except FeatstoreError:
        return options
    if find_stored_encoder(store, fingerprint) is not None:
        return options
    def but_length(fp: dict) -> dict:
        return {k: v for k, v in fp.items() if k not in ("max_length", "stride")}

    settings = {(e.fingerprint.get("max_length"), e.fingerprint.get("stride"))
                for e in store.manifest.encoders.values() if e.kind == "encoder"
                and same_encoder(but_length(e.fingerprint), but_length(fingerprint))}
    if len(settings) != 1:
        return options
    length, stride = settings.pop()
    if not isinstance(length, int) or (options.stride is not None and options.stride != stride):
        return options
    return replace(options, max_length=length, stride=stride)


def identify(options: FeaturizeOptions, root: Path, warn: Warn
             ) -> tuple[FeaturizeOptions, PassSources]:
    """The pass's sources, identified once (twice where the store keeps its encoder's window
    length, see `with_stored_length`), and the options that give them."""
    sources = identify_sources(options, warn)
    kept = with_stored_length(options, root, sources.encoder.fingerprint)
    if kept is options:
        return options, sources
    return kept, identify_sources(kept, warn)


def check_dataset_name(store: Store | StoreWriter, name: str, path: Path, replace: bool,
                       source: str | None = None) -> None:
    """A dataset holding another file is never replaced silently."""
    entry = store.manifest.datasets.get(name) if store.manifest is not None else None
    if entry is not None and not replace and source is None and \
            not same_source(entry.source, path):
        raise FeatstoreError(f"dataset {name!r} already holds {entry.source}; featurizing {path} "
                             "under that name would replace it: pass --name NEW, or --replace")


def featurize_corpus(
    corpus_path: str | Path,
    store_path: str | Path | None,
    options: FeaturizeOptions,
    name: str | None = None,
    text_col: str | None = None,
    progress: bool = True,
    warn: Warn | None = None,
    replace: bool = False,
    source: str | None = None,
    announce: str | None = None,
    pair_cols: Sequence[str] | None = None,
) -> FeaturizeSummary:
    """Featurize a corpus file into a store and record it as a dataset. A dataset of that name
    made from another file is replaced only with `replace`. `source` records where the rows
    came from when the file is only a carrier (a DataFrame written out): then a dataset of that
    name whose rows differ is replaced only with `replace`. With `pair_cols` (two columns), every
    row is a pair: both texts are encoded as any text is, the table keeps both keys, and with
    `options.cross` the pair is also encoded jointly as a source of its own."""
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    start = time.perf_counter()
    if options.cross and pair_cols is None:
        raise FeatstoreError("--cross encodes each pair jointly; name its two columns with "
                             "--pair-cols A B")
    if pair_cols is not None and text_col is not None:
        raise FeatstoreError("--text-col names one text column; a pair's two are --pair-cols")
    corpus = open_corpus(corpus_path, text_col, pair_cols)
    name = check_name(name or corpus.path.stem, "dataset")
    scan = scan_corpus(corpus, options.strict)
    rows, skipped = scan.rows, scan.skipped
    options = with_stored_model(options, default_store_path(store_path))
    make_engine(options, warn)  # its checks fail before any model loads
    options, sources = identify(options, default_store_path(store_path), warn)
    engine = make_engine(options, warn)
    if announce:  # said once the model is known good, so a refusal stays one line
        warn(announce)
    root = default_store_path(store_path)
    pass_start = time.perf_counter()
    pairs = corpus.pair_columns
    with StoreWriter(root, wait=options.wait, read_only_ok=True) as writer:
        check_dataset_name(writer, name, corpus.path, replace, source)
        table = DatasetTableWriter(writer.tmp, name, scan, corpus.path)
        chunks = (keyed_pairs(chunk, pairs) if pairs else keyed_rows(chunk, corpus.text_column)
                  for chunk in corpus.chunks(options.chunk_rows))
        texts = (rows - skipped) * (2 if pairs else 1)
        items = texts + (rows - skipped if options.cross else 0)  # the cross pass's pairs
        try:
            result = _run_pass(writer, engine, sources, chunks, table, items, progress)
            entry = writer.commit_dataset(
                name, table.path, text_column=corpus.text_column,
                source=source or str(corpus.path.resolve()), encoders=list(result.ids.values()),
                skipped=skipped, may_replace=replace or source is None,
                pair_columns=list(pairs) if pairs else None)
        except BaseException:
            table.discard()
            raise
        if result.report.workers:
            writer.remove_orphans()
    end = time.perf_counter()
    return _summary(result, sources, options, root, name, rows, skipped, texts,
                    rows - skipped if pairs else 0, entry.rows, end - start, end - pass_start)


def _summary(result: _PassResult, sources: PassSources, options: FeaturizeOptions, root: Path,
             name: str | None, rows: int, skipped: int, texts: int, pairs: int,
             dataset_rows: int, seconds: float, pass_seconds: float) -> FeaturizeSummary:
    r = result.report
    return FeaturizeSummary(
        store=str(root), dataset=name, engine=options.engine, workers=r.workers,
        encoder_id=result.ids[ENCODER], laser_encoder_id=result.ids.get(LASER),
        model=sources.model_name, rows_read=rows, skipped=skipped, texts=texts,
        unique=result.unique, new=r.new, cached=result.cached, windows=r.windows,
        compute_dtypes=dict(r.compute_dtypes), laser_new=r.laser_new, layers=sources.layers,
        features=sources.encoder.wanted,
        dataset_rows=dataset_rows, seconds=round(seconds, 3),
        pass_seconds=round(pass_seconds, 3), encode_seconds=round(r.encode_seconds, 3),
        load_seconds=round(r.load_seconds, 3),
        texts_per_s=round(r.new / pass_seconds, 1) if pass_seconds else 0.0,
        bytes_written=r.bytes_written,
        mb_per_s=round(r.bytes_written / 1e6 / pass_seconds, 2) if pass_seconds else 0.0,
        pairs=pairs, cross_encoder_id=result.ids.get(CROSS), cross_new=r.cross_new,
        cross_cached=result.cross_cached, cross_seconds=round(r.cross_seconds, 3),
        pairs_per_s=round(r.cross_new / r.cross_seconds, 1) if r.cross_seconds else 0.0)


def featurize_texts(texts: Sequence[str], store_path: str | Path | None,
                    options: FeaturizeOptions, progress: bool = False,
                    warn: Warn | None = None, announce: str | None = None) -> FeaturizeSummary:
    """Store features for any of `texts` not stored yet; no dataset is recorded. `announce` is
    said (through `warn`) once the sources are identified, so a refusal stays one line."""
    chunk = pd.DataFrame({"text": list(texts)})
    kept = sum(clean_text(t) is not None for t in texts)
    return _featurize_chunk(keyed_rows(chunk, "text"), len(texts), kept, 0, store_path,
                            options, progress, warn, announce)


def featurize_pairs(pairs: Sequence[tuple[str, str]], store_path: str | Path | None,
                    options: FeaturizeOptions, progress: bool = False,
                    warn: Warn | None = None, announce: str | None = None) -> FeaturizeSummary:
    """Store features for any text of `pairs` not stored yet and, with `options.cross`, the
    joint encoding of any pair not stored yet; no dataset is recorded. Every side must hold
    text."""
    frame = pd.DataFrame({"a": [p[0] for p in pairs], "b": [p[1] for p in pairs]})
    for i, (a, b) in enumerate(pairs):
        if clean_text(a) is None or clean_text(b) is None:
            raise FeatstoreError(f"pair {i + 1} has an empty side; a pair needs both texts")
    return _featurize_chunk(keyed_pairs(frame, ("a", "b")), 2 * len(pairs), 2 * len(pairs),
                            len(pairs), store_path, options, progress, warn, announce)


def _featurize_chunk(keyed: KeyedChunk, rows: int, kept: int, pairs: int,
                     store_path: str | Path | None, options: FeaturizeOptions, progress: bool,
                     warn: Warn | None, announce: str | None) -> FeaturizeSummary:
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    start = time.perf_counter()
    if options.cross and keyed.pairs is None:
        raise FeatstoreError("a joint (cross) encoding needs pairs of texts")
    options = with_stored_model(options, default_store_path(store_path))
    make_engine(options, warn)  # its checks fail before any model loads
    options, sources = identify(options, default_store_path(store_path), warn)
    engine = make_engine(options, warn)
    if announce:
        warn(announce)
    root = default_store_path(store_path)
    with StoreWriter(root, wait=options.wait) as writer:
        items = kept + (pairs if options.cross else 0)
        result = _run_pass(writer, engine, sources, [keyed], None, items, progress)
        if result.report.workers:
            writer.remove_orphans()
    seconds = time.perf_counter() - start
    return _summary(result, sources, options, root, None, rows, rows - kept, kept, pairs, 0,
                    seconds, seconds)
