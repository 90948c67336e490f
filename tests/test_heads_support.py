"""Synthetic stores for head tests: planted class signal in chosen layers and features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from featstore.store import StoreWriter, keys_for, open_store

HIDDEN = 16
LAYERS = [0, 1, 2, 3]


def make_features(y: np.ndarray, rng: np.random.Generator, signal_layer: int | None = 3,
                  strength: float = 3.0, n_classes: int | None = None) -> dict[str, np.ndarray]:
    """cls/mean/max [n, layers, hidden] noise; class centres added at `signal_layer`."""
    n = len(y)
    k = n_classes or int(y.max()) + 1
    centres = rng.normal(size=(k, HIDDEN))
    feats = {}
    for name in ("cls", "mean", "max"):
        arr = rng.normal(size=(n, len(LAYERS), HIDDEN))
        if signal_layer is not None:
            arr[:, LAYERS.index(signal_layer)] += strength * centres[y]
        feats[name] = arr.astype(np.float16)
    feats["pooler"] = (rng.normal(size=(n, HIDDEN)) + strength * centres[y]).astype(np.float16)
    return feats


def build_store(root: Path, texts: list[str], columns: dict[str, list], features: dict,
                name: str = "toy", encoder_id: str = "enc-toy", model: str = "toy-model",
                tokens: tuple[np.ndarray, np.ndarray] | None = None,
                laser: np.ndarray | None = None) -> Path:
    keys = keys_for(texts)
    fp = {"kind": "encoder", "model": model, "layers": LAYERS, "hidden": HIDDEN}
    shapes = {k: list(v.shape[1:]) for k, v in features.items()}
    ragged = {}
    if tokens is not None:
        shapes["tokens"] = [len(LAYERS), HIDDEN]
        ragged["tokens"] = tokens
    with StoreWriter(root) as w:
        w.ensure_encoder(encoder_id, fp, "float16", shapes)
        w.commit_shard(encoder_id, w.write_shard_file(encoder_id, keys, features, ragged))
        encs = [encoder_id]
        if laser is not None:
            lfp = {"kind": "laser", "model": "laser", "dim": laser.shape[1]}
            w.ensure_encoder("laser-toy", lfp, "float16", {"vector": [laser.shape[1]]})
            w.commit_shard("laser-toy", w.write_shard_file("laser-toy", keys,
                                                           {"vector": laser.astype(np.float16)}))
            encs.append("laser-toy")
        table = pa.table({"_key": keys, "text": texts, **columns})
        w.commit_dataset(name, table, text_column="text", source="synthetic", encoders=encs,
                         skipped=0)
    return root


def toy_store(root: Path, n: int = 240, n_classes: int = 3, seed: int = 0,
              split: bool = True, signal_layer: int | None = 3, strength: float = 3.0,
              labels: list | None = None, tokens: bool = False, laser: bool = False,
              name: str = "toy", model: str = "toy-model"):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    texts = [f"text number {i}" for i in range(n)]
    feats = make_features(y, rng, signal_layer, strength)
    label_values = labels if labels is not None else [f"c{v}" for v in y]
    cols: dict[str, list] = {"label": label_values}
    if split:
        cols["split"] = ["test" if i % 4 == 0 else "train" for i in range(n)]
    tok = None
    if tokens:
        lengths = rng.integers(2, 7, size=n)
        rows = []
        for i in range(n):
            t = rng.normal(size=(lengths[i], len(LAYERS), HIDDEN))
            t[lengths[i] - 1, -1] += strength * np.eye(HIDDEN)[y[i] % HIDDEN] * 2
            rows.append(t.astype(np.float16))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        tok = (np.concatenate(rows), offsets)
    lz = None
    if laser:
        centres = rng.normal(size=(n_classes, 8))
        lz = (rng.normal(size=(n, 8)) + 3 * centres[y]) * 0.001
    build_store(root, texts, cols, feats, name=name, tokens=tok, laser=lz, model=model)
    return open_store(root), y, texts
