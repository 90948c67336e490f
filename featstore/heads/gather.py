"""Gathering a head's inputs from the store: the encoder's per-layer rows (or token states) and
the vectors of each fusion source, kept in the store's float16 (heads convert and normalise
per minibatch, so memory stays near the size of the float16 rows).

Checks here turn "the store lacks it" into a message naming the featurize flag that adds it.
"""

from __future__ import annotations

import shlex

import numpy as np

from featstore.heads.errors import HeadError, ParamError, literal
from featstore.heads.fusion_sources import featurize_flags
from featstore.store import Store


def check_present(store: Store, encoder_id: str, keys: list[str], features: list[str],
                  where: str) -> None:
    """Every key has every feature, else an error naming what to featurize."""
    entry = store.encoder_entry(encoder_id)
    model = entry.fingerprint.get("model", encoder_id)
    flags = shlex.join(["--store", str(store.root), *featurize_flags(entry.fingerprint)])
    for feat in features:
        if feat not in entry.feature_shapes:
            if feat == "tokens":
                raise ParamError(f"{{pool=}}attention needs token states, which encoder "
                                 f"{literal(encoder_id)} did not store; run `featurize --tokens "
                                 f"CORPUS {literal(flags)}` on the corpus of {literal(where)}")
            if feat == "pooler":
                raise ParamError(f"encoder {literal(encoder_id)} ({literal(str(model))}) has no "
                                 "pooler output; choose another {pool}")
            raise HeadError(f"encoder {encoder_id} stored no {feat!r} features; run `featurize "
                            f"CORPUS --features cls,mean,max {flags}` on the corpus of {where}")
    missing = int((~store.has(encoder_id, keys, features)).sum())
    if missing:
        flag = " --tokens" if "tokens" in features else ""
        kind = entry.kind
        if kind == "laser":
            flag = " --laser"
        if kind == "vectors":
            name = entry.fingerprint.get("name", encoder_id)
            raise HeadError(f"{where}: {missing} of {len(keys)} texts have no vectors in the "
                            f"imported source {name!r}, and a head fused with it reads only "
                            "texts its file holds: import a file holding these texts and every "
                            f"training text (`featstore import-vectors --store "
                            f"{shlex.quote(str(store.root))} --name {name} --replace FILE`), "
                            "then fit the head again")
        if kind == "laser":
            flags = ""
        raise HeadError(f"{where}: {missing} of {len(keys)} texts were not featurized with "
                        f"encoder {encoder_id} ({model}); run `featurize{flag} CORPUS {flags}` "
                        "on its corpus first".replace("  ", " "))


# Values (rows x width) read per chunk: bounds the temporary arrays of one read to ~64 MB.
CHUNK_VALUES = 1 << 24


def _read_groups(store: Store, encoder_id: str, keys: list[str], feature: str,
            width: int) -> list[np.ndarray]:
    """Row positions of `keys` in groups of whole shards (each shard is read once), each group
    about CHUNK_VALUES values."""
    idx = store.index(encoder_id, feature)
    shard_of = np.fromiter((loc.shard if (loc := idx.get(k)) is not None else -1 for k in keys),
                           dtype=np.int64, count=len(keys))
    order = np.argsort(shard_of, kind="stable")
    target = max(1, CHUNK_VALUES // max(1, width))
    _, starts = np.unique(shard_of[order], return_index=True)
    bounds, last = [0], 0
    for s in starts[1:].tolist():
        if s - last >= target:
            bounds.append(s)
            last = s
    bounds.append(len(keys))
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def gather_features(store: Store, encoder_id: str, keys: list[str], features: list[str],
                    layers: list[int] | None, pool: str = "none") -> np.ndarray:
    """Features of `keys` side by side per layer, read chunk by chunk into one array.

    `layers` None reads a vector feature ([n, width]). Otherwise `pool` shapes the rows:
    "none" keeps [n, layers, width] (trainable poolings), "concat" joins the layers into
    [n, layers * width], any other fixed pooling averages them into [n, width]. Rows stay in the
    store's dtype (float16) unless layers are averaged, which is done in float32, as the heads
    compute; so memory is one array of the result plus one chunk, never a float32 copy of
    float16 rows."""
    entry = store.encoder_entry(encoder_id)
    widths = [int(entry.feature_shapes[f][-1]) if f in entry.feature_shapes else 0
              for f in features]
    per_row = sum(widths) * (len(layers) if layers else 1)
    out: np.ndarray | None = None
    for sel in _read_groups(store, encoder_id, keys, features[0], per_row):
        part = [keys[i] for i in sel.tolist()]
        blocks = [store.gather(encoder_id, part, f, layers) for f in features]
        block = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=-1)
        block = pool_layers(pool, block) if layers is not None else block
        if out is None:
            out = np.empty((len(keys), *block.shape[1:]), dtype=block.dtype)
        out[sel] = block
    if out is None:
        raise HeadError("no rows to gather")
    return out


def pool_layers(pool: str, block: np.ndarray) -> np.ndarray:
    """[k, layers, width] -> what `pool` feeds the head (see `gather_features`)."""
    if pool == "none":
        return block
    if pool == "concat":
        return block.reshape(block.shape[0], -1)
    if block.shape[1] == 1:
        return block[:, 0]
    return block.astype(np.float32).mean(axis=1)


def gather_tokens(store: Store, encoder_id: str, keys: list[str], layers: list[int]
                  ) -> list[np.ndarray]:
    """Per-text [T_i, dim] float32 token states: the mean of the stored `layers`' states."""
    pos = store.layer_positions(encoder_id, layers)
    rows = store.gather_ragged(encoder_id, keys, "tokens")
    if rows and rows[0].ndim != 3:
        return [r.astype(np.float32) for r in rows]
    if len(pos) == 1:
        return [r[:, pos[0]].astype(np.float32) for r in rows]
    return [r[:, pos].astype(np.float32).mean(axis=1) for r in rows]
