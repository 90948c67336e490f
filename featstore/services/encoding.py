"""`encode_texts` (`Store.encode`, `featstore.encode`): texts in, one float32 vector each out,
like sentence-transformers' `encode`, but through the store: texts it holds are read, only the
others are encoded (and kept).

By default a sentence-transformers model directory is pooled and normalised as its own `encode`
does (`1_Pooling/config.json`, a `Normalize` module); other models give the top layer's mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from featstore.featurize.errors import EncoderError
from featstore.featurize.model_names import resolve_model
from featstore.featurize.st_config import SentenceTransformersConfig, read_st_config
from featstore.heads.errors import HeadError
from featstore.heads.fusion_sources import encoder_layers
from featstore.heads.gather import gather_features
from featstore.heads.inputs import InputLayout, featurize_for_layouts
from featstore.heads.kinds import FIXED_POOLINGS, pooling
from featstore.heads.rows import text_keys
from featstore.store import Store, StoreError

Layers = int | Sequence[int] | str | None


def model_config(fingerprint: dict) -> SentenceTransformersConfig | None:
    """The sentence-transformers settings of the model an encoder was computed from, where its
    directory is here to read."""
    try:
        source = resolve_model(str(fingerprint.get("model")))[1]
    except EncoderError:
        return None
    return read_st_config(source)


def _encoder(store: Store, texts: list[str], encoder: str | None, progress: bool) -> str:
    """The store's encoder `encoder` names (its only one by default); an encoder the store does
    not hold yet, or any in an empty store, is featurized first from the model it names."""
    if store.has_encoder():
        try:
            return store.resolve_encoder(encoder, kind="encoder")
        except StoreError as exc:
            if encoder is None or "several" in str(exc):
                raise
    store.featurize(texts, model=encoder, progress=progress)
    return store.resolve_encoder(encoder, kind="encoder")


def _layers(store: Store, encoder_id: str, layers: Layers) -> list[int] | None:
    if layers is None:
        return None
    if isinstance(layers, str):
        if layers != "all":
            raise HeadError(f"layers={layers!r}: give 'all', a layer number or a list of them")
        return encoder_layers(store, encoder_id)
    return [int(layers)] if isinstance(layers, int | np.integer) else [int(x) for x in layers]


def encode_texts(store: Store, texts: str | Sequence[str], pool: str | None = None,
           layers: Layers = None, normalize: bool | None = None, encoder: str | None = None,
           progress: bool = False) -> np.ndarray:
    """float32 [n, dim] vectors of `texts` (a single text: [dim]), in order. `pool`: a fixed
    pooling of the stored rows (default: the model's own sentence-transformers pooling, else
    mean); `layers`: a layer number, a list of them (averaged; joined for `concat`) or "all"
    (default: the pooling's, the top layer); `normalize`: scale each vector to unit length
    (default: as the model's own `encode` does); `encoder`: the store's encoder by model name,
    path or id (a model it lacks is featurized first)."""
    single = isinstance(texts, str)
    given = [texts] if single else list(texts)
    if not given:
        raise HeadError("encode needs at least one text")
    keys = text_keys(given, "the given texts")
    enc = _encoder(store, given, encoder, progress)
    config = model_config(store.encoder_entry(enc).fingerprint)
    pool = pool or (config.pooling if config is not None else None) or "mean"
    if pool not in FIXED_POOLINGS:
        raise HeadError(f"pool={pool!r}: encode takes a fixed pooling of the stored rows: "
                        f"{', '.join(FIXED_POOLINGS)}")
    layout = InputLayout.resolve(store, pool, None, _layers(store, enc, layers), None, (), enc)
    featurize_for_layouts(store, given, [layout], progress=progress)
    layout.check(store, keys, "the given texts")
    read = layout.layers if pooling(pool).layered else None
    out = np.asarray(gather_features(store, enc, keys, layout.features, read,
                                     pool if read is not None else "none"), dtype=np.float32)
    if normalize if normalize is not None else bool(config is not None and config.normalize):
        out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out[0] if single else out
