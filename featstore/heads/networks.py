"""Torch heads and the network that chains trainable pooling -> fusion -> head.

Batch-first throughout; every output keeps its batch axis, so a batch of one works.
"""

from __future__ import annotations

import torch
from torch import nn

from featstore.heads.errors import HeadError
from featstore.heads.fusion import ConcatFusion, ProjectFusion

TORCH_HEADS = ("linear", "mlp")
HEADS = ("logreg",) + TORCH_HEADS


def check_head(head: str) -> None:
    if head not in HEADS:
        raise HeadError(f"unknown head {head!r}; choose one of: {', '.join(HEADS)}")


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
