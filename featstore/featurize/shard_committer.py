"""A writer thread: shards are written and committed while the encoder computes the next ones."""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping

import numpy as np

from featstore.store import StoreWriter


class ShardCommitter:
    """Queue of shards to commit, in order, from one background thread.

    The queue is short so memory stays bounded: a slow disk slows the encoder instead of
    piling up results. An error in the thread is raised again in the caller's thread.
    """

    def __init__(self, writer: StoreWriter, depth: int = 2) -> None:
        self._writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._closed = False
        self.bytes_written = 0
        self.rows_written = 0
        self._thread = threading.Thread(target=self._run, name="featstore-writer", daemon=True)
        self._thread.start()

    def submit(self, encoder_id: str, keys: list[str], features: Mapping[str, np.ndarray],
               ragged: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
               meta: Mapping[str, np.ndarray] | None = None,
               attrs: Mapping[str, str] | None = None) -> None:
        self._raise_if_failed()
        if keys:
            self._queue.put((encoder_id, keys, features, ragged, meta, attrs))

    def close(self) -> None:
        """Wait for every submitted shard to be committed; closing twice is harmless."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue
            try:
                encoder_id, keys, features, ragged, meta, attrs = item
                entry = self._writer.write_shard_file(encoder_id, keys, features, ragged, meta,
                                                      attrs)
                self._writer.commit_shard(encoder_id, entry)
                self.bytes_written += entry.bytes
                self.rows_written += entry.rows
            except BaseException as exc:  # re-raised in the submitting thread
                self._error = exc
