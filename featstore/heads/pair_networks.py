"""Torch networks over pairs: the two texts' rows go through one shared side network (any
pooling, fusion), their vectors u and v are combined (u, v, |u-v|, u*v, cosine) next to the
per-pair block (cosines as stored, the cross source) into a head; or, for the projection head,
each vector is projected (a square map starting as the identity) and the pair scored by the
cosine of the projections, trained with
the CoSENT loss (Su 2022; as sentence-transformers' CoSENTLoss): for every two pairs in a batch
whose gold order is known, the more similar one should have the higher cosine.

Inputs come as `PairBatches` give them: a batch of B pairs is 2B side rows (the first texts,
then the second ones) and, as the last source, a [B, k] per-pair block.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from featstore.heads.errors import HeadError
from featstore.heads.fusion import ConcatFusion, ProjectFusion
from featstore.heads.networks import head_module
from featstore.heads.poolings import pooling_module

SIDE_PARTS = ("u", "v", "absdiff", "product", "cosine")


class SideNetwork(nn.Module):
    """One text's rows -> one vector: a trainable pooling (or none: rows arrive pooled), then
    the fusion of the pooled rows with each source."""

    def __init__(self, pooling: nn.Module | None, enc_dim: int, source_dims: list[int],
                 fuse_mode: str, proj_dim: int) -> None:
        super().__init__()
        self.pooling = pooling
        pooled = int(getattr(pooling, "out_dim", enc_dim)) if pooling is not None else enc_dim
        dims = [pooled, *source_dims]
        self.fusion: nn.Module = ProjectFusion(dims, proj_dim) if fuse_mode == "project" \
            else ConcatFusion(dims)
        self.out_dim = int(self.fusion.out_dim)

    def forward(self, enc: torch.Tensor, sources: list[torch.Tensor],
                mask: torch.Tensor | None) -> torch.Tensor:
        pooled = self.pooling(enc, mask) if self.pooling is not None else enc
        return self.fusion([pooled, *sources])


def combine(u: torch.Tensor, v: torch.Tensor, parts: tuple[str, ...]) -> torch.Tensor:
    """[B, d] x 2 -> the pair's row, parts in the order given."""
    out = []
    for part in parts:
        if part == "u":
            out.append(u)
        elif part == "v":
            out.append(v)
        elif part == "absdiff":
            out.append((u - v).abs())
        elif part == "product":
            out.append(u * v)
        elif part == "cosine":
            out.append(nn.functional.cosine_similarity(u, v, dim=1, eps=1e-8)[:, None])
    return torch.cat(out, dim=1)


class PairNetwork(nn.Module):
    """Side network (shared by both texts) -> combined row (+ per-pair block) -> head; or, with
    `head="projection"`, the cosine of the two projected vectors ([B, 1])."""

    def __init__(self, side: SideNetwork | None, n_sources: int, parts: tuple[str, ...],
                 extra_dim: int, head: str, out_dim: int, hidden: int, dropout: float,
                 proj_dim: int) -> None:
        super().__init__()
        self.side = side
        self.n_sources = n_sources
        self.parts = tuple(p for p in parts if p in SIDE_PARTS)
        self.extra_dim = extra_dim
        self.projection = head == "projection"
        if self.projection:
            if side is None:
                raise HeadError("the projection head projects each text's vector; it needs "
                                "source=bi")
            # square and residual, its change starting at zero: training starts from the plain
            # cosine of the vectors, and weight decay pulls the projection back towards it
            self.proj = nn.Linear(side.out_dim, side.out_dim, bias=False)
            nn.init.zeros_(self.proj.weight)
            return
        width = extra_dim
        if side is not None:
            d = side.out_dim
            width += sum(1 if p == "cosine" else d for p in self.parts)
        if width == 0:
            raise HeadError("the pair's row is empty: name parts with combine= or read the "
                            "cross source")
        self.head = head_module(head, width, out_dim, hidden, dropout)

    def forward(self, enc: torch.Tensor, sources: list[torch.Tensor] | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.side is None:  # the per-pair block alone arrives as `enc`
            return self.head(enc)
        sources = list(sources or [])
        extra = sources[self.n_sources] if self.extra_dim else None
        vec = self.side(enc, sources[:self.n_sources], mask)
        half = vec.shape[0] // 2
        u, v = vec[:half], vec[half:]
        if self.projection:
            pu, pv = u + self.proj(u), v + self.proj(v)
            return nn.functional.cosine_similarity(pu, pv, dim=1, eps=1e-8)[:, None]
        row = combine(u, v, self.parts) if self.parts else u[:, :0]
        if extra is not None:
            row = torch.cat([row, extra], dim=1)
        return self.head(row)


def build_pair_network(pool: str, flat: bool, side_dims: dict | None, fuse_mode: str,
                       proj_dim: int, parts: tuple[str, ...], extra_dim: int, head: str,
                       out_dim: int, hidden: int, dropout: float) -> PairNetwork:
    """The network of a pair head from its configuration and input widths; the same call
    builds it for training and for loading saved weights. Flat side rows arrive pooled (and
    joined into one block with concat fusion)."""
    side = None
    n_sources = 0
    if side_dims is not None:
        joined = flat and fuse_mode == "concat"
        pooling = None if flat else pooling_module(pool, side_dims["layers"], side_dims["enc"],
                                                   hidden)
        sources = [] if joined else list(side_dims["sources"])
        enc = side_dims["enc"] + (sum(side_dims["sources"]) if joined else 0)
        side = SideNetwork(pooling, enc, sources, fuse_mode, proj_dim)
        n_sources = len(sources)
    return PairNetwork(side, n_sources, parts, extra_dim, head, out_dim, hidden, dropout,
                       proj_dim)


def cosent_loss(scale: float):  # noqa: ANN201  a loss function
    """CoSENT: log(1 + sum over pairs (i, j) with gold_i > gold_j of exp(scale * (cos_j -
    cos_i))). Scale-free in the targets: only their order counts."""
    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        s = out[:, 0] * scale
        diff = s[None, :] - s[:, None]  # [i, j] = s_j - s_i
        above = target[:, None] > target[None, :]
        diff = diff.masked_fill(~above, -1e12)
        zero = torch.zeros(1, dtype=diff.dtype, device=diff.device)
        return torch.logsumexp(torch.cat([zero, diff.flatten()]), dim=0)
    return loss


def rank_score(out: torch.Tensor, target: torch.Tensor) -> float:
    """Spearman correlation of scores and targets (early stopping of similarity heads)."""
    def ranks(x: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x), dtype=np.float64)
        r[order] = np.arange(len(x))
        return r
    a, b = ranks(out[:, 0].double().numpy()), ranks(target.double().numpy())
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])
