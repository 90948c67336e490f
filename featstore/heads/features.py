"""Gathering a head's inputs from the store: the encoder's per-layer rows (or token states) and
the vectors of each fusion source, converted from float16 to float32 once.

Checks here turn "the store lacks it" into a message naming the featurize flag that adds it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featstore.heads.errors import HeadError
from featstore.store import Store

FUSE_FEATURE = "vector"  # what vector-only sources (LASER) store per text


@dataclass(frozen=True)
class Source:
    """A fusion source resolved in a store: its name as given, encoder id, and feature."""

    name: str
    encoder_id: str
    feature: str
    layer: int | None  # model layer number for layered features, None for vectors


def encoder_layers(store: Store, encoder_id: str) -> list[int]:
    return [int(i) for i in store.encoder_entry(encoder_id).fingerprint.get("layers", [])]


def resolve_source(store: Store, name: str) -> Source:
    """`laser` (or any vector kind) -> that kind's encoder; else another encoder by model or id,
    whose top-layer mean vector is used."""
    kinds = {e.fingerprint.get("kind") for e in store.manifest.encoders.values()}
    if name == "laser" and "laser" not in kinds:
        raise HeadError("the store holds no LASER vectors; run `featurize --laser` on the corpus "
                        "(LASER models come from `python -m laserembeddings download-models`)")
    if name in kinds and name != "encoder":
        return Source(name, store.resolve_encoder(None, kind=name), FUSE_FEATURE, None)
    try:
        enc = store.resolve_encoder(name)
    except HeadError:
        raise
    except Exception as exc:  # StoreError: say it is about --fuse
        raise HeadError(f"--fuse {name}: {exc}") from None
    entry = store.encoder_entry(enc)
    if FUSE_FEATURE in entry.feature_shapes:
        return Source(name, enc, FUSE_FEATURE, None)
    layers = encoder_layers(store, enc)
    return Source(name, enc, "mean", layers[-1] if layers else None)


def check_present(store: Store, encoder_id: str, keys: list[str], features: list[str],
                  where: str) -> None:
    """Every key has every feature, else an error naming what to featurize."""
    entry = store.encoder_entry(encoder_id)
    model = entry.fingerprint.get("model", encoder_id)
    for feat in features:
        if feat not in entry.feature_shapes:
            if feat == "tokens":
                raise HeadError(f"--pool attention needs token states, which encoder {encoder_id} "
                                f"did not store; re-run `featurize --tokens` on {where}")
            if feat == "pooler":
                raise HeadError(f"encoder {encoder_id} ({model}) has no pooler output; "
                                "choose another --pool")
            raise HeadError(f"encoder {encoder_id} stored no {feat!r} features; re-run featurize "
                            f"on {where}")
    missing = int((~store.has(encoder_id, keys, features)).sum())
    if missing:
        flag = " --tokens" if "tokens" in features else ""
        kind = entry.fingerprint.get("kind")
        if kind == "laser":
            flag = " --laser"
        raise HeadError(f"{where}: {missing} of {len(keys)} texts were not featurized with "
                        f"encoder {encoder_id} ({model}); run `featurize{flag} --model {model}` "
                        "on it first")


def gather_layers(store: Store, encoder_id: str, keys: list[str], features: list[str],
                  layers: list[int]) -> np.ndarray:
    """[n, len(layers), sum of feature widths] float32: features side by side per layer."""
    blocks = [store.gather(encoder_id, keys, f, layers) for f in features]
    if len(blocks) == 1:
        return blocks[0].astype(np.float32)
    return np.concatenate(blocks, axis=2, dtype=np.float32)


def gather_vector(store: Store, encoder_id: str, keys: list[str], feature: str,
                  layer: int | None = None) -> np.ndarray:
    """[n, dim] float32 of a one-vector-per-text feature (pooler, LASER vector, one layer)."""
    arr = store.gather(encoder_id, keys, feature, layer) if layer is not None else \
        store.gather(encoder_id, keys, feature)
    return arr.astype(np.float32)


def gather_tokens(store: Store, encoder_id: str, keys: list[str], layer: int) -> list[np.ndarray]:
    """Per-text [T_i, dim] float32 token states of one stored layer."""
    pos = store.layer_positions(encoder_id, [layer])[0]
    rows = store.gather_ragged(encoder_id, keys, "tokens")
    return [r[:, pos].astype(np.float32) if r.ndim == 3 else r.astype(np.float32) for r in rows]
