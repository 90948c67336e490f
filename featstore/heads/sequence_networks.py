"""Torch networks over a sequence of stored message vectors: a small transformer with a learned
[CLS], a bidirectional GRU, and the masked mean/max summary they both keep as a skip path.

Every network takes x [B, T, D] (messages, zero-padded), mask [B, T] (True for real messages)
and, optionally, gaps [B, T] (time-gap bucket ids), batch-first throughout, and returns logits
[B, classes]. A sequence's output depends on its own messages only: padding is masked
everywhere (attention keys, pooled summaries, packed GRU steps), so neither its batch
neighbours, the batch size nor the padded length change it, and a batch of one works.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from featstore.heads.errors import HeadError, ParamError
from featstore.heads.sequences import TIME_BUCKETS

SEQ_NETWORKS = ("transformer", "gru")
# Position and time-gap embeddings start on the scale of the layer-normed message projections;
# at BERT's 0.02 they are 50x weaker, and order is learned only after many more epochs.
EMBED_STD = 0.5


def masked_mean_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, T, D] -> [B, 2D]: the mean and the max over each sequence's real messages."""
    m = mask.unsqueeze(-1).to(x.dtype)
    count = m.sum(1).clamp_min(1.0)
    mean = (x * m).sum(1) / count
    neg = torch.finfo(x.dtype).min
    top = x.masked_fill(~mask.unsqueeze(-1), neg).amax(1)
    top = torch.where(mask.any(1, keepdim=True), top, torch.zeros_like(top))
    return torch.cat([mean, top], dim=1)


def _classifier(in_dim: int, out_dim: int, kind: str, hidden: int, dropout: float) -> nn.Module:
    if kind == "linear":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, out_dim))
    if kind == "mlp":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.GELU(),
                             nn.Dropout(dropout), nn.Linear(hidden, out_dim))
    raise HeadError(f"unknown sequence classifier {kind!r}; choose linear or mlp")


class SkipPath(nn.Module):
    """The masked mean and max of the (normalised) message vectors, through dropout: what a
    head averaging the messages sees, so the sequence network starts from it, not below it."""

    def __init__(self, in_dim: int, dropout: float) -> None:
        super().__init__()
        self.out_dim = 2 * in_dim
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.drop(masked_mean_max(x, mask))


class SequenceTransformer(nn.Module):
    """Messages projected to `width`, a learned [CLS] prepended, learned positions (and
    time-gap bucket embeddings), a batch-first TransformerEncoder with a key-padding mask; the
    [CLS] output beside the skip path into the classifier."""

    def __init__(self, in_dim: int, out_dim: int, width: int = 64, depth: int = 1,
                 n_heads: int = 4, max_len: int = 64, time_gaps: bool = False,
                 dropout: float = 0.2, classifier: str = "linear", skip: bool = True) -> None:
        super().__init__()
        if width % n_heads:
            raise ParamError(f"{{width}} {width} must be a multiple of {{n_heads}} {n_heads}")
        self.max_len = max_len
        self.proj = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, width),
                                  nn.LayerNorm(width))
        self.cls = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.positions = nn.Embedding(max_len + 1, width)  # position 0 is [CLS]
        nn.init.normal_(self.positions.weight, std=EMBED_STD)
        self.gaps = nn.Embedding(TIME_BUCKETS, width) if time_gaps else None
        if self.gaps is not None:
            nn.init.normal_(self.gaps.weight, std=EMBED_STD)
        layer = nn.TransformerEncoderLayer(width, n_heads, dim_feedforward=2 * width,
                                           dropout=dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.skip = SkipPath(in_dim, dropout) if skip else None
        feat = width + (self.skip.out_dim if self.skip is not None else 0)
        self.head = _classifier(feat, out_dim, classifier, 2 * width, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, gaps: torch.Tensor | None = None
                ) -> torch.Tensor:
        b, t, _ = x.shape
        if t > self.max_len:
            raise HeadError(f"a sequence of {t} messages exceeds this head's {self.max_len}")
        h = self.proj(x)
        if self.gaps is not None and gaps is not None:
            h = h + self.gaps(gaps)
        h = torch.cat([self.cls.expand(b, 1, -1), h], dim=1)
        h = h + self.positions(torch.arange(t + 1, device=x.device)).unsqueeze(0)
        keep = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=x.device), mask], dim=1)
        h = self.encoder(h, src_key_padding_mask=~keep)
        parts = [self.norm(h[:, 0])]
        if self.skip is not None:
            parts.append(self.skip(x, mask))
        return self.head(torch.cat(parts, dim=1))


class SequenceGRU(nn.Module):
    """Messages projected to `width`, a bidirectional GRU over the packed sequences (padding
    never enters a step); both final states beside the skip path into the classifier."""

    def __init__(self, in_dim: int, out_dim: int, width: int = 64, time_gaps: bool = False,
                 dropout: float = 0.2, classifier: str = "linear", skip: bool = True) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, width),
                                  nn.LayerNorm(width))
        self.gaps = nn.Embedding(TIME_BUCKETS, width) if time_gaps else None
        self.gru = nn.GRU(width, width, batch_first=True, bidirectional=True)
        self.skip = SkipPath(in_dim, dropout) if skip else None
        feat = 2 * width + (self.skip.out_dim if self.skip is not None else 0)
        self.head = _classifier(feat, out_dim, classifier, 2 * width, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, gaps: torch.Tensor | None = None
                ) -> torch.Tensor:
        h = self.proj(x)
        if self.gaps is not None and gaps is not None:
            h = h + self.gaps(gaps)
        lengths = mask.sum(1).clamp_min(1).cpu()
        packed = pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed)  # [2, B, width], in the batch's own order
        parts = [torch.cat([last[0], last[1]], dim=1)]
        if self.skip is not None:
            parts.append(self.skip(x, mask))
        return self.head(torch.cat(parts, dim=1))


class SequenceNetwork(nn.Module):
    """The adapter the shared training loop calls: net(enc, sources, mask), where `sources`
    holds the gap buckets when the head uses times."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, enc: torch.Tensor, sources: list[torch.Tensor] | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:  # every position a real message
            mask = torch.ones(enc.shape[:2], dtype=torch.bool, device=enc.device)
        gaps = sources[0] if sources else None
        return self.body(enc, mask, gaps)


def build_sequence_network(kind: str, in_dim: int, out_dim: int, width: int, depth: int,
                           n_heads: int, max_len: int, time_gaps: bool, dropout: float,
                           classifier: str = "linear", skip: bool = True) -> SequenceNetwork:
    """The network of a sequence head; the same call builds it to train and to load weights."""
    if kind == "transformer":
        body: nn.Module = SequenceTransformer(in_dim, out_dim, width, depth, n_heads, max_len,
                                              time_gaps, dropout, classifier, skip)
    elif kind == "gru":
        body = SequenceGRU(in_dim, out_dim, width, time_gaps, dropout, classifier, skip)
    else:
        raise HeadError(f"{kind!r} is not a sequence network; choose one of: "
                        f"{', '.join(SEQ_NETWORKS)}")
    return SequenceNetwork(body)
