"""A pair head's inputs: each text's stored vectors (the bi-encoder side), pooled and fused as a
per-text head pools and fuses them, and the pair's joint encoding (the cross source); a pair's
row made from them (`combine`: u, v, |u-v|, u*v, cosines, and `align`: how the two texts'
stored token states align, layer by layer, see heads/alignment.py).

The side's normaliser is fitted on the training pairs' texts, each text once whichever side it
is on, so both sides are scaled alike and u, v stay comparable. Cosines compare the vectors as
stored (pooled, before any scaling): the `cosine` part is the cosine per layer, feature and
source, and the cosine head is the plain cosine baseline. The cross source is read like an
encoder, by pair key, and its logits (a sequence classifier's) join its vectors.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from featstore.heads.alignment import alignment_block
from featstore.heads.errors import HeadError, ParamError, literal
from featstore.heads.fusion_sources import FusionSource, encoder_layers, featurize_flags
from featstore.heads.gather import check_present
from featstore.heads.inputs import HeadInputs, InputLayout
from featstore.heads.kinds import VECTOR_PARTS
from featstore.heads.pair_rows import PairRows
from featstore.heads.poolings import choose_layers, stored_features
from featstore.heads.training import Inputs, LazyInputs, as_lazy
from featstore.store import Store

LOGITS = "logits"  # what a cross source of a sequence-classification model stores besides
CROSS_KIND = "cross"


def cross_layout(store: Store, encoder_fingerprint: dict, pool: str, of: str | None,
                 layers: list[int] | None, layer_start: int | None) -> InputLayout:
    """What a head reads of the cross source made by this encoder: the pooling's features and
    layers, and the logits as a source when it holds them."""
    cross_id = store.find_derived(CROSS_KIND, encoder_fingerprint)
    if cross_id is None:
        raise HeadError(f"the store holds no joint encoding of pairs by encoder "
                        f"{encoder_fingerprint.get('model')}; featurize the pair corpus with "
                        f"--pair-cols A B --cross --store {store.root} first")
    entry = store.encoder_entry(cross_id)
    chosen = choose_layers(pool, encoder_layers(store, cross_id), layers, layer_start)
    store.layer_positions(cross_id, chosen)
    sources = [FusionSource(LOGITS, cross_id, LOGITS, None)] \
        if LOGITS in entry.feature_shapes else []
    return InputLayout(cross_id, entry.fingerprint, stored_features(pool, of), chosen, sources,
                       [entry.fingerprint] * len(sources))


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    num = np.einsum("ij,ij->i", a, b, dtype=np.float64)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (num / np.maximum(den, 1e-12)).astype(np.float32)


class PairBatches:
    """Pairs as the training loop reads them: the side rows of unique texts (`side`, normalised
    lazily) indexed by each pair's two texts, plus a flat per-pair block (`extra`: cosines,
    the cross source). A batch of B pairs is one `Inputs` whose encoder rows are the B first
    texts then the B second ones, and whose last source is the per-pair block."""

    def __init__(self, side: Inputs | LazyInputs | None, ia: np.ndarray, ib: np.ndarray,
                 extra: np.ndarray | None) -> None:
        self.side, self.ia, self.ib, self.extra = side, ia, ib, extra

    def __len__(self) -> int:
        return len(self.ia)

    @property
    def lengths(self) -> torch.Tensor | None:
        """Each pair's longer text in tokens, where the side rows are token states (training
        batches pairs of similar length: training.batch_order)."""
        mask = getattr(self.side, "mask", None)
        if mask is None:
            return None
        tokens = mask.sum(1)
        return torch.maximum(tokens[self.ia], tokens[self.ib])

    @property
    def width(self) -> int:
        side = 2 * self.side.width if self.side is not None else 0
        return side + (self.extra.shape[1] if self.extra is not None else 0)

    def subset(self, idx: np.ndarray | torch.Tensor) -> PairBatches:
        idx = np.asarray(idx, dtype=np.int64)
        return PairBatches(self.side, self.ia[idx], self.ib[idx],
                           None if self.extra is None else self.extra[idx])

    def take(self, idx: np.ndarray | torch.Tensor) -> Inputs:
        idx = np.asarray(idx, dtype=np.int64)
        extra = None if self.extra is None else torch.from_numpy(
            np.ascontiguousarray(self.extra[idx]))
        if self.side is None:
            if extra is None:
                raise HeadError("a pair head with no inputs")
            return Inputs(extra)
        a, b = self.side.take(self.ia[idx]), self.side.take(self.ib[idx])
        mask = None if a.mask is None or b.mask is None else torch.cat([a.mask, b.mask])
        sources = [torch.cat([x, y]) for x, y in zip(a.sources, b.sources, strict=True)]
        return Inputs(torch.cat([a.enc, b.enc]), sources + ([extra] if extra is not None
                                                            else []), mask)


@dataclass
class PairMatrix:
    """A pair's row as numpy (what logistic and ridge regression read): the combined side parts
    (scaled), the cosines (as stored) and the cross block (scaled)."""

    rows: np.ndarray
    cosine: np.ndarray  # each pair's cosine of the whole vectors, as stored


class PairInputs:
    """What a pair head reads (see the module docstring). `side`: the per-text inputs (source
    bi or both), `cross`: the cross source's (cross or both), `parts`: how u and v combine."""

    def __init__(self, source: str, parts: tuple[str, ...], side: HeadInputs | None,
                 cross: HeadInputs | None) -> None:
        self.source = source
        self.parts = tuple(parts)
        self.side = side
        self.cross = cross
        self.dims: dict[str, Any] = {}

    @property
    def layouts(self) -> list[InputLayout]:
        return [h.layout for h in (self.side, self.cross) if h is not None]

    # -- the side: each text's vectors --------------------------------------------------------
    def _unique(self, rows: PairRows) -> tuple[list[str], np.ndarray, np.ndarray]:
        keys = list(dict.fromkeys(rows.keys_a + rows.keys_b))
        pos = {k: i for i, k in enumerate(keys)}
        return (keys, np.array([pos[k] for k in rows.keys_a], dtype=np.int64),
                np.array([pos[k] for k in rows.keys_b], dtype=np.int64))

    def _side(self, store: Store, rows: PairRows, fit: bool
              ) -> tuple[Inputs | LazyInputs, np.ndarray, np.ndarray, list[str]]:
        if self.side is None:
            raise HeadError("this pair head reads no per-text vectors")
        keys, ia, ib = self._unique(rows)
        self.check_tokens(store, rows)
        x = self.side.fit_transform(store, keys, rows.where) if fit else \
            self.side.transform(store, keys, rows.where)
        return x, ia, ib, keys

    def _blocks(self, store: Store, keys: list[str], where: str) -> list[np.ndarray]:
        """The side's rows as stored, split per layer, feature and source: the blocks each
        cosine compares."""
        if self.side is None:
            return []
        enc, sources = self.side.gather(self.side.layout.bind(store), store, keys, where)
        enc = np.asarray(enc, dtype=np.float32)
        width = int(self.side.layout.encoder_fingerprint.get("hidden") or enc.shape[1])
        if enc.ndim != 2 or enc.shape[1] % width:
            width = enc.shape[1]
        blocks = [enc[:, i:i + width] for i in range(0, enc.shape[1], width)]
        return blocks + [np.asarray(s, dtype=np.float32) for s in sources]

    def cosines(self, store: Store, rows: PairRows) -> tuple[np.ndarray, np.ndarray]:
        """([pairs, blocks] cosine per layer, feature and source; [pairs] cosine of the whole
        vectors), both of the vectors as stored."""
        keys, ia, ib = self._unique(rows)
        blocks = self._blocks(store, keys, rows.where)
        per = np.stack([_cosine(b[ia], b[ib]) for b in blocks], axis=1)
        whole = np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]
        return per, _cosine(whole[ia], whole[ib])

    def check_tokens(self, store: Store, rows: PairRows) -> None:
        """Refuse, naming the pair featurize run that adds them, where these inputs read token
        states (`--pool soft-align`, `--combine align`) that the side's encoder did not store."""
        if self.side is None:
            return
        if self.side.kind.reads_tokens:
            what = f"{{pool=}}{self.side.pool}"
        elif "align" in self.parts:
            what = "{combine} align"
        else:
            return
        layout = self.side.layout.bind(store)
        enc = layout.encoder_id
        if "tokens" in store.encoder_entry(enc).feature_shapes:
            return
        flags = ["--store", str(store.root), *featurize_flags(layout.encoder_fingerprint)]
        cols = ["--pair-cols", *rows.columns] if rows.columns else []
        raise ParamError(f"{what} compares token states, which encoder {literal(enc)} did not "
                         f"store; run `featurize --tokens {literal(shlex.join(cols))} CORPUS "
                         f"{literal(shlex.join(flags))}` on the corpus of {literal(rows.where)}")

    def alignments(self, store: Store, rows: PairRows) -> np.ndarray:
        """[pairs, width]: how each pair's token states align in the side's layers (the
        estimator refuses `align` without a side)."""
        layout = self.side.layout.bind(store)
        enc = layout.encoder_id
        keys, ia, ib = self._unique(rows)
        self.check_tokens(store, rows)
        check_present(store, enc, keys, ["tokens"], rows.where)
        positions = store.layer_positions(enc, layout.layers)
        tokens = [t[:, positions] for t in store.gather_ragged(enc, keys, "tokens")]
        return alignment_block(tokens, ia, ib)

    # -- the pair's row -----------------------------------------------------------------------
    def _cross(self, store: Store, rows: PairRows, fit: bool) -> np.ndarray | None:
        if self.cross is None:
            return None
        x = self.cross.fit_transform(store, rows.pair_keys, rows.where) if fit else \
            self.cross.transform(store, rows.pair_keys, rows.where)
        return as_lazy(x).matrix()

    def _extra(self, store: Store, rows: PairRows, fit: bool, flat_side: bool
               ) -> np.ndarray | None:
        """The per-pair block: cosines as stored (fixed poolings), token alignments and the
        cross block."""
        blocks = []
        if "cosine" in self.parts and self.side is not None and flat_side:
            blocks.append(self.cosines(store, rows)[0])
        if "align" in self.parts:
            blocks.append(self.alignments(store, rows))
        cross = self._cross(store, rows, fit)
        if cross is not None:
            blocks.append(cross)
        if not blocks:
            return None
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def matrix(self, store: Store, rows: PairRows, fit: bool = False) -> np.ndarray:
        """[pairs, width]: the combined side parts, cosines and cross block."""
        blocks = []
        if self.side is not None and any(p in VECTOR_PARTS for p in self.parts):
            x, ia, ib, _ = self._side(store, rows, fit)
            m = as_lazy(x).matrix()
            u, v = m[ia], m[ib]
            for part in self.parts:
                if part == "u":
                    blocks.append(u)
                elif part == "v":
                    blocks.append(v)
                elif part == "absdiff":
                    blocks.append(np.abs(u - v))
                elif part == "product":
                    blocks.append(u * v)
        elif self.side is not None and fit:
            self._side(store, rows, fit)  # the normaliser is part of what is saved
        extra = self._extra(store, rows, fit, flat_side=True)
        if extra is not None:
            blocks.append(extra)
        out = np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]
        if fit:
            self.dims["width"] = int(out.shape[1])
        return np.ascontiguousarray(out, dtype=np.float32)

    def batches(self, store: Store, rows: PairRows, fit: bool = False) -> PairBatches:
        """The pairs as the torch network reads them."""
        flat = self.side is not None and self.side.flat
        side, ia, ib = None, np.arange(len(rows)), np.arange(len(rows))
        if self.side is not None:
            side, ia, ib, _ = self._side(store, rows, fit)
        extra = self._extra(store, rows, fit, flat_side=flat)
        if fit:
            self.dims["side"] = None if self.side is None else self.side.dims
            self.dims["extra"] = 0 if extra is None else int(extra.shape[1])
        return PairBatches(side, ia, ib, extra)

    # -- saving -------------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for name, h in (("side", self.side), ("cross", self.cross)):
            if h is not None:
                out.update({f"{name}.{k}": v for k, v in h.state().items()})
        return out

    def layouts_json(self) -> dict[str, Any]:
        return {name: None if h is None else {**h.layout.to_json(), "dims": h.dims}
                for name, h in (("side", self.side), ("cross", self.cross))}

    def load_state(self, docs: dict[str, Any], dims: dict[str, Any],
                   tensors: dict[str, np.ndarray]) -> PairInputs:
        self.dims = dims
        for name, h in (("side", self.side), ("cross", self.cross)):
            if h is None:
                continue
            prefix = f"{name}."
            mine = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            h.load_state(docs[name]["dims"], mine)
        return self
