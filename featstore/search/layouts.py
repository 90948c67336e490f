"""Which stored vectors a search compares: a fixed pooling of the encoder's rows, exactly as a
head would read them (`InputLayout`), turned into unit-length float32 vectors so that a dot
product is a cosine.

Several parts (mean and max, or the layers of `concat`) are each scaled to unit length before
they are joined, and the joined vector is scaled by 1/sqrt(parts): the cosine of two texts is
then the average of their parts' cosines, so a part with larger values (max next to mean) does
not decide alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from featstore.heads.errors import HeadError
from featstore.heads.gather import gather_features
from featstore.heads.inputs import InputLayout
from featstore.heads.kinds import POOLINGS_BY_NAME, pooling
from featstore.store import Store
from featstore.store.hashing import sha256_json

# poolings whose vector needs no training: `weighted` is read as the plain average of its layers
# (as logistic regression reads it)
SEARCH_POOLINGS = tuple(k for k, v in POOLINGS_BY_NAME.items()
                        if not v.trainable or v.averages_for_logreg)
CHUNK_ROWS = 32768  # rows gathered and normalised at a time: bounds the float32 temporaries


@dataclass
class SearchLayout:
    """A pooling resolved in a store: the encoder, the stored features and layers it reads."""

    pool: str
    layout: InputLayout

    @classmethod
    def resolve(cls, store: Store, pool: str = "mean", layers: Sequence[int] | None = None,
                of: str | None = None, layer_start: int | None = None,
                encoder: str | None = None) -> SearchLayout:
        if pool not in POOLINGS_BY_NAME:
            raise HeadError(f"unknown pooling {pool!r}; neighbours compare one of: "
                            f"{', '.join(SEARCH_POOLINGS)}")
        if pool not in SEARCH_POOLINGS:
            raise HeadError(f"--pool {pool} is learned by a head; neighbours compare a fixed "
                            f"pooling: {', '.join(SEARCH_POOLINGS)}")
        kind = pooling(pool)
        if of is not None and not kind.takes_of:
            raise HeadError(f"--of applies to --pool concat or weighted, not {pool}")
        if layer_start is not None and not kind.takes_layer_start:
            raise HeadError(f"--layer-start applies to --pool weighted, not {pool}")
        if layers and not kind.layered:
            raise HeadError(f"--pool {pool} has no layers; drop --layers")
        return cls(pool, InputLayout.resolve(store, pool, of, layers, layer_start, (), encoder))

    @property
    def encoder_id(self) -> str:
        return self.layout.encoder_id

    def identity(self) -> dict[str, Any]:
        """What makes two searches compare the same vectors: the encoder's fingerprint, the
        features, layers and how they are combined."""
        combine = "concat" if self.pool == "concat" else \
            ("average" if len(self.layout.layers) > 1 else "one")
        return {"encoder": self.layout.encoder_fingerprint, "features": self.layout.features,
                "layers": self.layout.layers if pooling(self.pool).layered else None,
                "layers_combined": combine, "parts": "unit-length each, joined",
                "version": 1}

    def digest(self) -> str:
        return sha256_json(self.identity())[:12]

    def describe(self) -> str:
        """`mean of layer 6`, `mean-max of layers 3-6 averaged`, `pooler`."""
        layers = self.layout.layers
        if not layers:
            return self.pool
        if len(layers) == 1:
            return f"{self.pool} of layer {layers[0]}"
        how = "joined" if self.pool == "concat" else "averaged"
        span = f"{layers[0]}-{layers[-1]}" if layers == list(range(layers[0], layers[-1] + 1)) \
            else ",".join(map(str, layers))
        return f"{self.pool} of layers {span} {how}"

    def check(self, store: Store, keys: list[str], where: str) -> None:
        self.layout.check(store, keys, where)

    def chunks(self, store: Store, keys: list[str], rows: int = CHUNK_ROWS
               ) -> Iterator[np.ndarray]:
        """Unit-length float32 vectors of `keys`, in order, `rows` at a time."""
        for a in range(0, len(keys), rows):
            yield self._vectors(store, keys[a:a + rows])

    def vectors(self, store: Store, keys: list[str]) -> np.ndarray:
        """Unit-length float32 vectors of `keys`: [n, width]."""
        if not keys:
            return np.zeros((0, self.width(store)), dtype=np.float32)
        out: np.ndarray | None = None
        a = 0
        for block in self.chunks(store, keys):
            if out is None:
                out = np.empty((len(keys), block.shape[1]), dtype=np.float32)
            out[a:a + len(block)] = block
            a += len(block)
        assert out is not None
        return out

    def width(self, store: Store) -> int:
        entry = store.encoder_entry(self.encoder_id)
        per = sum(int(entry.feature_shapes[f][-1]) for f in self.layout.features)
        return per * (len(self.layout.layers) if self.pool == "concat" else 1)

    def _vectors(self, store: Store, keys: list[str]) -> np.ndarray:
        kind = pooling(self.pool)
        layers = self.layout.layers if kind.layered else None
        mode = "concat" if self.pool == "concat" else "mean"
        raw = gather_features(store, self.encoder_id, keys, self.layout.features, layers,
                              mode if layers is not None else "none")
        x = np.asarray(raw, dtype=np.float32).reshape(len(keys), -1)
        entry = store.encoder_entry(self.encoder_id)
        part = int(entry.feature_shapes[self.layout.features[0]][-1])
        return unit_parts(x, part)


def unit_parts(x: np.ndarray, part: int) -> np.ndarray:
    """Each `part`-wide block of each row scaled to unit length, the row then to unit length
    (a zero block stays zero); float32, in place when `x` is float32."""
    x = np.asarray(x, dtype=np.float32)
    n, width = x.shape
    blocks = x.reshape(n, width // part, part)
    norms = np.linalg.norm(blocks, axis=2, keepdims=True)
    np.divide(blocks, norms, out=blocks, where=norms > 0)
    if blocks.shape[1] > 1:
        x *= np.float32(1.0 / np.sqrt(blocks.shape[1]))
    return x
