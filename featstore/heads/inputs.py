"""A head's inputs: which stored rows feed it (`InputLayout`), and those rows gathered from the
store and normalised per source with statistics of the training rows (`HeadInputs`).

A layout names the encoder and every fusion source by fingerprint, never by a store's id, so a
saved head applies only to features made the same way, in whichever store holds them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from featstore.heads.errors import HeadError
from featstore.heads.fusion_sources import FusionSource, encoder_layers, resolve_source
from featstore.heads.gather import check_present, gather_features, gather_tokens
from featstore.heads.kinds import pooling
from featstore.heads.normalizer import Normalizer
from featstore.heads.poolings import choose_layers, pad_tokens, stored_features
from featstore.heads.training import Inputs, LazyInputs
from featstore.store import FeatstoreError, Store


def find_by_fingerprint(store: Store, fingerprint: dict, what: str) -> str:
    """The id of the store's source with this fingerprint; refuse anything else."""
    found = store.find_encoder(fingerprint)
    if found is not None:
        return found
    model = fingerprint.get("model") or fingerprint.get("name", "?")
    held = ", ".join(f"{k} ({e.fingerprint.get('model') or e.fingerprint.get('name', '?')})"
                     for k, e in store.manifest.encoders.items()) or "none"
    raise HeadError(f"{what}: the head was trained on features of {model} with a fingerprint this "
                    f"store does not hold (encoders here: {held}); refit the head on this store")


@dataclass
class InputLayout:
    """The encoder, stored features and layers a head reads, and its fusion sources; ids are
    those of the store the layout was resolved or bound in."""

    encoder_id: str
    encoder_fingerprint: dict
    features: list[str]
    layers: list[int]
    sources: list[FusionSource]
    source_fingerprints: list[dict]

    @classmethod
    def resolve(cls, store: Store, pool: str, of: str | None, layers: Sequence[int] | None,
                layer_start: int | None, fuse: Sequence[str], encoder: str | None
                ) -> InputLayout:
        """What a pooling needs of this store; fails if the store cannot serve it."""
        encoder_id = store.resolve_encoder(encoder, kind="encoder")
        chosen = choose_layers(pool, encoder_layers(store, encoder_id),
                               list(layers) if layers else None, layer_start)
        if pooling(pool).layered:
            store.layer_positions(encoder_id, chosen)  # an unstored layer -> error
        sources = [resolve_source(store, s) for s in fuse]
        return cls(encoder_id, store.encoder_entry(encoder_id).fingerprint,
                   stored_features(pool, of), chosen, sources,
                   [store.encoder_entry(s.encoder_id).fingerprint for s in sources])

    def bind(self, store: Store) -> InputLayout:
        """The same layout with this store's ids for the same fingerprints."""
        enc = find_by_fingerprint(store, self.encoder_fingerprint, "encoder")
        sources = [replace(s, encoder_id=find_by_fingerprint(store, fp, f"--fuse {s.name}"))
                   for s, fp in zip(self.sources, self.source_fingerprints, strict=True)]
        return replace(self, encoder_id=enc, sources=sources)

    def needs(self) -> list[tuple[dict, list[str]]]:
        """(fingerprint, features) of every source the layout reads: its encoder's features,
        then each fusion source's; what encoding a new text for this head takes."""
        return [(self.encoder_fingerprint, list(self.features)),
                *((fp, [s.feature]) for s, fp in zip(self.sources, self.source_fingerprints,
                                                     strict=True))]

    def check(self, store: Store, keys: list[str], where: str) -> None:
        """Fail fast, before any training, if the store lacks a row these keys need."""
        check_present(store, self.encoder_id, keys, self.features, where)
        for s in self.sources:
            check_present(store, s.encoder_id, keys, [s.feature], where)

    def to_json(self) -> dict[str, Any]:
        return {"encoder": {"id": self.encoder_id, "fingerprint": self.encoder_fingerprint},
                "features": self.features, "layers": self.layers,
                "sources": [{"name": s.name, "id": s.encoder_id, "feature": s.feature,
                             "layer": s.layer, "fingerprint": fp}
                            for s, fp in zip(self.sources, self.source_fingerprints,
                                             strict=True)]}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> InputLayout:
        return cls(doc["encoder"]["id"], doc["encoder"]["fingerprint"], list(doc["features"]),
                   list(doc["layers"]),
                   [FusionSource(s["name"], s["id"], s["feature"], s["layer"])
                    for s in doc["sources"]],
                   [s["fingerprint"] for s in doc["sources"]])


def featurize_for_layouts(store: Store, texts: Sequence[str] | None,
                          layouts: Sequence[InputLayout], progress: bool = False,
                          laser_dir: str | None = None) -> int:
    """Encode those of `texts` that any source of these layouts lacks, with that source (the
    encoder, a fused encoder, LASER); a source featstore cannot compute (imported vectors) is
    refused before anything is encoded. Returns how many texts were encoded."""
    if not texts:
        return 0
    needs: dict[str, tuple[dict, list[str]]] = {}
    for layout in layouts:
        for fp, feats in layout.needs():
            _, have = needs.setdefault(json.dumps(fp, sort_keys=True), (fp, []))
            have.extend(f for f in feats if f not in have)
    try:
        return store.featurize_sources(list(texts), list(needs.values()), progress=progress,
                                       laser_dir=laser_dir)
    except HeadError:
        raise
    except FeatstoreError as exc:  # the featurizer's one line, as the heads' own error
        raise HeadError(str(exc)) from None


class HeadInputs:
    """Rows for a head, gathered by key and normalised per source.

    `flat`: fixed poolings (and `weighted` under logreg) are applied while reading, giving one
    row vector per text; otherwise the head gets [n, layers, dim] (or token states for
    attention). `join`: flat parts are concatenated into one block (concat fusion).
    """

    def __init__(self, layout: InputLayout, pool: str, flat: bool, join: bool,
                 normalize: str) -> None:
        self.layout = layout
        self.pool = pool
        self.kind = pooling(pool)
        self.flat = flat
        self.join = join
        self.normalize = normalize
        self.normalizers: dict[str, Normalizer] = {}
        self.dims: dict[str, Any] = {}

    # -- reading ------------------------------------------------------------------------------
    def gather(self, layout: InputLayout, store: Store, keys: list[str], where: str
               ) -> tuple[Any, list[np.ndarray]]:
        """The rows as stored (pooled while read when flat), before normalisation: the
        encoder's and each fusion source's."""
        layout.check(store, keys, where)
        if self.kind.reads_tokens:
            read = layout.layers if self.kind.averages_token_layers else layout.layers[-1:]
            enc: Any = gather_tokens(store, layout.encoder_id, keys, read)
        elif not self.kind.layered:
            enc = gather_features(store, layout.encoder_id, keys, layout.features, None)
        else:
            enc = gather_features(store, layout.encoder_id, keys, layout.features,
                                  layout.layers, self.pool if self.flat else "none")
        sources = [gather_features(store, s.encoder_id, keys, [s.feature],
                                   None if s.layer is None else [s.layer], "mean")
                   for s in layout.sources]
        return enc, sources

    def _wrap(self, enc: Any, sources: list[np.ndarray]) -> Inputs | LazyInputs:
        norms = [self.normalizers["enc"],
                 *(self.normalizers[f"src{i}"] for i in range(len(sources)))]
        if self.kind.reads_tokens:
            padded, mask = pad_tokens([norms[0].transform(r) for r in enc])
            srcs = [torch.from_numpy(n.transform(s)) for s, n in zip(sources, norms[1:],
                                                                      strict=True)]
            return Inputs(torch.from_numpy(padded), srcs, torch.from_numpy(mask))
        return LazyInputs([enc, *sources], [n.transform for n in norms], join=self.join)

    def fit_transform(self, store: Store, keys: list[str], where: str) -> Inputs | LazyInputs:
        """Fit the normalisers on these (training) rows, statistics read in chunks; returns the
        rows, normalised lazily per minibatch (attention's padded token states: in memory)."""
        enc, sources = self.gather(self.layout, store, keys, where)
        self.normalizers = {"enc": Normalizer(self.normalize)}
        for i, s in enumerate(sources):
            self.normalizers[f"src{i}"] = Normalizer(self.normalize).fit(s)
        if self.kind.reads_tokens:
            self.normalizers["enc"].fit_rows(enc)
        else:
            self.normalizers["enc"].fit(enc)
        x = self._wrap(enc, sources)
        rows = x.enc if isinstance(x, Inputs) else enc  # attention: padded [n, T, dim]
        self.dims = {"enc": int(rows.shape[-1]), "layers": int(rows.shape[1]) if rows.ndim == 3
                     else 1, "sources": [int(s.shape[1]) for s in sources]}
        return x

    def transform(self, store: Store, keys: list[str], where: str) -> Inputs | LazyInputs:
        """Rows of any store holding the same features, normalised as fitted."""
        if not self.normalizers:
            raise HeadError("these inputs are not fitted yet")
        return self._wrap(*self.gather(self.layout.bind(store), store, keys, where))

    def matrix(self, store: Store, keys: list[str], where: str = "the given rows") -> np.ndarray:
        """One float32 [rows, width] matrix (what logreg reads)."""
        x = self.transform(store, keys, where)
        if isinstance(x, Inputs):
            raise HeadError(f"--pool {self.pool} inputs are token states, not a matrix")
        return x.matrix()

    def batch(self, store: Store, keys: list[str], where: str = "the given rows") -> Inputs:
        """Every row at once, as the torch network reads a minibatch."""
        x = self.transform(store, keys, where)
        return x if isinstance(x, Inputs) else x.take(np.arange(len(x)))

    # -- saving -------------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for key, norm in self.normalizers.items():
            out.update(norm.state(f"norm.{key}"))
        return out

    def load_state(self, dims: dict[str, Any], tensors: dict[str, np.ndarray]) -> HeadInputs:
        self.dims = dims
        self.normalizers = {"enc": Normalizer.from_state(self.normalize, tensors, "norm.enc")}
        for i in range(len(self.layout.sources)):
            self.normalizers[f"src{i}"] = Normalizer.from_state(self.normalize, tensors,
                                                                 f"norm.src{i}")
        return self
