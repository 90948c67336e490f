"""Texts to shards: windowing, token-budget batches, the encoder forward, windows combined per
text, LASER vectors. Every engine encodes through these functions, so all store the same values.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from featstore.featurize.batching import token_budget_batches
from featstore.featurize.encoder import Encoder, Windows
from featstore.featurize.laser import LaserVectors


@dataclass
class EncodedShard:
    """One shard's worth of encoded texts, ready for `write_shard_file`."""

    keys: list[str]
    features: dict[str, np.ndarray]
    ragged: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
    meta: dict[str, np.ndarray] | None = None
    windows: int = 0
    attrs: dict[str, str] | None = None  # shard-wide facts: the encoder's compute dtype


def default_batch_tokens(encoder: Encoder, batch_tokens: int | None) -> int:
    """--batch-tokens, else a budget that suits the device."""
    return batch_tokens or (16384 if encoder.device.type == "cuda" else 4096)


def encode_shards(encoder: Encoder, keys: list[str], texts: list[str], *, shard_rows: int,
                  batch_tokens: int, tokens: bool = False,
                  only: Sequence[str] | None = None) -> Iterator[EncodedShard]:
    """Window, batch and encode texts; yield shards of at most `shard_rows` texts. `only`: the
    features to store (those the texts still lack), so a later pass adding token states never
    writes a second, possibly different, copy of the vectors already committed."""
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
        feats, ragged, n_windows = encode_windows(encoder, win, wins, group, batch_tokens, tokens)
        if only is not None:
            feats = {k: v for k, v in feats.items() if k in only}
            ragged = {k: v for k, v in (ragged or {}).items() if k in only} or None
        meta = {"n_windows": n_windows,
                "n_tokens": np.array([sum(int(lengths[w]) for w in window_of_text[t])
                                      for t in group], dtype=np.int32)}
        yield EncodedShard([keys[t] for t in group], feats, ragged, meta, len(wins),
                           {"compute_dtype": encoder.compute_dtype_name,
                            "runtime": encoder.runtime})


def encode_windows(encoder: Encoder, win: Windows, wins: np.ndarray, group: np.ndarray,
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
    out = combine_windows(per_window, owners, n_windows)
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


def combine_windows(per_window: dict[str, np.ndarray], owners: np.ndarray,
                    n_windows: np.ndarray) -> dict[str, np.ndarray]:
    """Each text's (or pair's) vectors from its windows': the average, the maximum of `max`."""
    n = len(n_windows)
    if len(owners) == n and np.array_equal(owners, np.arange(n)):
        return per_window
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
    return out


def laser_shards(laser: LaserVectors, keys: list[str], texts: list[str], *, shard_rows: int,
                 dtype: str) -> Iterator[EncodedShard]:
    """LASER vectors of texts, in shards of at most `shard_rows`, stored in `dtype`."""
    np_dtype = np.float16 if dtype == "float16" else np.float32
    for s in range(0, len(texts), shard_rows):
        vecs = laser.encode(texts[s:s + shard_rows]).astype(np_dtype)
        # laserembeddings' BiLSTM always runs in float32
        yield EncodedShard(keys[s:s + shard_rows], {"vector": vecs},
                           attrs={"compute_dtype": "float32"})
