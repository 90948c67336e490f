"""Torch heads and the network that chains trainable pooling -> fusion -> head.

Batch-first throughout; every output keeps its batch axis, so a batch of one works.
"""

from __future__ import annotations

import torch
from torch import nn

from featstore.heads.errors import HeadError
from featstore.heads.fusion import ConcatFusion, ProjectFusion
from featstore.heads.poolings import pooling_module


def head_module(kind: str, in_dim: int, out_dim: int, hidden: int, dropout: float) -> nn.Module:
    """`linear`: dropout then one linear layer. `mlp`: one hidden GELU layer with dropout."""
    if kind == "linear":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, out_dim))
    if kind == "mlp":
        return nn.Sequential(
            nn.Dropout(dropout / 2), nn.Linear(in_dim, hidden), nn.GELU(),
            nn.Dropout(dropout), nn.Linear(hidden, out_dim),
        )
    raise HeadError(f"head {kind!r} is not a torch head (use linear or mlp)")


class HeadNetwork(nn.Module):
    """pooling (optional, over the encoder input) -> fusion of pooled + extra sources -> head.

    forward(enc, sources, mask): enc is [B, D] (already pooled) or [B, L, D] / [B, T, D] for a
    trainable pooling; sources are [B, d_i] blocks; mask [B, T] marks real tokens.
    """

    def __init__(self, pooling: nn.Module | None, enc_dim: int, source_dims: list[int],
                 fuse_mode: str, proj_dim: int, head: str, out_dim: int, hidden: int,
                 dropout: float) -> None:
        super().__init__()
        self.pooling = pooling
        pooled_dim = int(getattr(pooling, "out_dim", enc_dim)) if pooling is not None else enc_dim
        dims = [pooled_dim, *source_dims]
        if fuse_mode == "project":
            self.fusion: nn.Module = ProjectFusion(dims, proj_dim)
        else:
            self.fusion = ConcatFusion(dims)
        self.head = head_module(head, self.fusion.out_dim, out_dim, hidden, dropout)

    def forward(self, enc: torch.Tensor, sources: list[torch.Tensor] | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        pooled = self.pooling(enc, mask) if self.pooling is not None else enc
        return self.head(self.fusion([pooled, *(sources or [])]))


def build_network(pool: str, flat: bool, input_dims: dict, fuse_mode: str, proj_dim: int,
                  head: str, out_dim: int, hidden: int, dropout: float) -> HeadNetwork:
    """The torch network of a head, from its configuration and the widths of its inputs; the same
    call builds it for training and for loading saved weights. `flat` inputs arrive pooled; with
    concat fusion they also arrive joined into one block."""
    joined = flat and fuse_mode == "concat"
    pooling = None if flat else pooling_module(pool, input_dims["layers"], input_dims["enc"],
                                               hidden)
    sources = list(input_dims["sources"])
    enc_dim = input_dims["enc"] + (sum(sources) if joined else 0)
    return HeadNetwork(pooling, enc_dim, [] if joined else sources, fuse_mode, proj_dim, head,
                       out_dim, hidden, dropout)
