"""Fusion of vector sources (the encoder's pooled vector, LASER, other encoders) in a torch head.

Sources come in very different scales (LASER vectors are tiny next to MiniLM's mean vectors), so
each source is normalised on its own before concatenation (`featstore.heads.normalizer`), or
mapped by its own learned linear projection to a common width (`project`) and trained jointly
with the head.
"""

from __future__ import annotations

import torch
from torch import nn


class ProjectFusion(nn.Module):
    """One learned linear map per source to a common width, then concatenation:
    [B, d_1], ..., [B, d_k] -> [B, k * width]."""

    def __init__(self, dims: list[int], width: int) -> None:
        super().__init__()
        self.proj = nn.ModuleList([nn.Linear(d, width) for d in dims])
        self.out_dim = width * len(dims)

    def forward(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([p(x) for p, x in zip(self.proj, parts, strict=True)], dim=1)


class ConcatFusion(nn.Module):
    """Plain concatenation of (already normalised) sources."""

    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.out_dim = int(sum(dims))

    def forward(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
