"""The local engine: this process encodes, a writer thread commits shards as they come."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from featstore.featurize import sources
from featstore.featurize.engine import EngineReport, opened
from featstore.featurize.errors import EngineStateError, LaserError
from featstore.featurize.options import FeaturizeOptions
from featstore.featurize.shard_committer import ShardCommitter
from featstore.store import StoreWriter

if TYPE_CHECKING:  # torch loads only when there is something to encode
    from featstore.featurize.encoder import Encoder
    from featstore.featurize.laser import LaserVectors
    from featstore.featurize.pair_encoding import CrossEncoder


class LocalEngine:
    """Encodes each submission at once, so a long corpus streams through in bounded memory."""

    def __init__(self, options: FeaturizeOptions) -> None:
        self.options = options
        self.report = EngineReport()
        self._sources: sources.PassSources | None = None
        self._encoder: Encoder | None = None
        self._laser: LaserVectors | None = None
        self._cross: CrossEncoder | None = None
        self._committer: ShardCommitter | None = None
        self._ids: dict[str, str] = {}
        self._progress: Callable[[int], None] = lambda n: None

    def open(self, writer: StoreWriter, pass_sources: sources.PassSources, ids: dict[str, str],
             progress: Callable[[int], None]) -> None:
        self._sources = pass_sources
        self.options = pass_sources.options or self.options
        self._encoder, self._laser = pass_sources.loaded_encoder, pass_sources.loaded_laser
        self._ids = ids
        self._progress = progress
        self._committer = ShardCommitter(writer)

    def _encoder_model(self) -> Encoder:
        if self._encoder is None:
            self._encoder = sources.load_encoder(self.options)
            sources.check_loaded(opened(self._sources, "local"), encoder=self._encoder)
        return self._encoder

    def submit(self, role: str, keys: list[str], texts: list[str],
               only: list[str] | None = None) -> None:
        committer = opened(self._committer, "local")
        if not keys:
            return
        from featstore.featurize import shard_encoding

        if role == sources.ENCODER:
            t0 = time.perf_counter()
            encoder = self._encoder_model()
            encoder.prepare(len(keys))  # the runtime, settled by the first submission's size
            self.report.load_seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            budget = shard_encoding.default_batch_tokens(encoder, self.options.batch_tokens)
            for shard in shard_encoding.encode_shards(encoder, keys, texts,
                                                      shard_rows=self.options.shard_rows,
                                                      batch_tokens=budget,
                                                      tokens=self.options.tokens,
                                                      only=only):
                self.report.encode_seconds += time.perf_counter() - t0
                self.report.windows += shard.windows
                committer.submit(self._ids[sources.ENCODER], shard.keys, shard.features,
                                       shard.ragged, shard.meta, shard.attrs)
                self.report.new += len(shard.keys)
                self.report.count_compute_dtype(shard.attrs, len(shard.keys))
                self._progress(len(shard.keys))
                t0 = time.perf_counter()
        elif role == sources.CROSS:
            self._submit_pairs(keys, texts, only)  # type: ignore[arg-type]  (pairs)
        elif role == sources.LASER:
            if self._laser is None:
                self._laser = sources.load_laser(self.options, warn=lambda msg: None)
                if self._laser is None:
                    raise LaserError("the LASER models the pass identified are gone; run the "
                                     "pass again")
                sources.check_loaded(opened(self._sources, "local"), laser=self._laser)
            for shard in shard_encoding.laser_shards(self._laser, keys, texts,
                                                     shard_rows=self.options.shard_rows,
                                                     dtype=self.options.dtype):
                committer.submit(self._ids[sources.LASER], shard.keys, shard.features,
                                       attrs=shard.attrs)
                self.report.laser_new += len(shard.keys)

    def _submit_pairs(self, keys: list[str], pairs: list[tuple[str, str]],
                      only: list[str] | None) -> None:
        """Pairs the cross source lacks, encoded jointly and committed shard by shard."""
        from featstore.featurize import pair_encoding, shard_encoding

        committer = opened(self._committer, "local")
        spec = opened(self._sources, "local").cross
        if spec is None:
            raise EngineStateError("pairs were submitted to a pass without a cross source")
        if self._cross is None:
            self._cross = pair_encoding.CrossEncoder(self._encoder_model(),
                                                     int(spec.fingerprint.get("logits", 0)))
        t0 = time.perf_counter()
        budget = shard_encoding.default_batch_tokens(self._cross.encoder,
                                                     self.options.batch_tokens)
        for shard in pair_encoding.encode_pair_shards(self._cross, keys, pairs,
                                                      shard_rows=self.options.shard_rows,
                                                      batch_tokens=budget, only=only):
            self.report.cross_seconds += time.perf_counter() - t0
            committer.submit(self._ids[sources.CROSS], shard.keys, shard.features, None,
                             shard.meta, shard.attrs)
            self.report.cross_new += len(shard.keys)
            self._progress(len(shard.keys))
            t0 = time.perf_counter()

    def finish(self) -> EngineReport:
        """Wait until every shard is committed (raises what the writer thread hit)."""
        if self._committer is not None:
            self._committer.close()
            self.report.bytes_written = self._committer.bytes_written
        return self.report

    def close(self) -> None:
        if self._committer is not None:
            with contextlib.suppress(Exception):  # the original error is already propagating
                self._committer.close()
