"""Poolings: how per-layer, per-text features become one vector per text.

Every pooling reads what the store already holds. The store keeps, per text and layer, the CLS
state and the masked mean and max over tokens; because a weighted average of layers followed by
CLS or mean equals the weighted average of the per-layer CLS or mean vectors, these rows serve
every pooling except attention and soft-align (pairs), which need the token states
(`featurize --tokens`).

Fixed poolings are numpy functions of the gathered [n, layers, dim] array; trainable ones are
torch modules over it, trained jointly with a torch head. All tensors are batch-first.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from featstore.heads.errors import HeadError, ParamError
from featstore.heads.kinds import pooling

CONCAT_DEFAULT_LAYERS = 4
# The LSTM's width. Its recurrence runs step by step on the CPU; at 512 units it costs about 2 s
# per epoch per 1k rows on two cores, at 128 about 7x less, with no loss on a handful of layers.
LSTM_WIDTH = 128
# soft-align's projected token width (as the LSTM's): its attention and comparisons grow with
# it, and at 128 one STS-B fit already takes a minute and a half on two cores
SOFT_ALIGN_WIDTH = 128


def stored_features(pool: str, of: str | None) -> list[str]:
    """Names of the stored features a pooling reads, concatenated along the vector axis."""
    return pooling(pool).features(of)


def choose_layers(pool: str, stored: list[int], layers: list[int] | None,
                  layer_start: int | None) -> list[int]:
    """Model layer numbers a pooling uses (0 is the embedding output, the last is the top).

    --layers wins; else cls/mean/max/... and attention use the top layer, `concat` the top four,
    `weighted` the layers from --layer-start (default: the middle layer) to the top, `lstm` every
    layer from --layer-start (default: the first transformer layer), `soft-align` every layer.
    """
    if not stored:
        raise HeadError("the encoder's fingerprint lists no layers")
    top = stored[-1]
    rule = pooling(pool).layers
    if rule == "none":
        return []
    if layers:
        return [top + 1 + i if i < 0 else i for i in layers]
    if rule == "top4":
        return stored[-CONCAT_DEFAULT_LAYERS:]
    if rule == "every":
        return list(stored)
    if rule in ("from-middle", "from-first"):
        if layer_start is None:
            layer_start = top // 2 if rule == "from-middle" else min(1, top)
        start = top + 1 + layer_start if layer_start < 0 else layer_start
        chosen = [i for i in stored if i >= start]
        if not chosen:
            raise ParamError(f"{{layer_start}} {layer_start} is above the top layer ({top})")
        return chosen
    return [top]


class WeightedLayers(nn.Module):
    """Softmax-normalised learned weights over layers: [B, L, D] -> [B, D].

    The logits are scaled by `sharpness` so that, at the learning rate that suits the head, the
    layer mix can still move away from uniform within a few epochs."""

    sharpness = 10.0

    def __init__(self, n_layers: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n_layers))

    def weights(self) -> torch.Tensor:
        """The layer mix as the forward pass uses it (a tensor in the autograd graph)."""
        return torch.softmax(self.sharpness * self.logits, dim=0)

    def layer_weights(self) -> np.ndarray:
        """The learned layer mix as plain numbers: float64 [layers], summing to 1."""
        with torch.no_grad():
            return torch.softmax(self.sharpness * self.logits.double(), dim=0).cpu().numpy()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.einsum("bld,l->bd", x, self.weights())


class LSTMOverLayers(nn.Module):
    """An LSTM reading the per-layer vectors bottom to top; its last hidden state: [B, L, D] ->
    [B, hidden]."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dim, hidden, batch_first=True)
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        _, (h_n, _) = self.lstm(x)
        return h_n[-1]  # [num_layers, B, hidden] -> [B, hidden], also for B == 1


class AttentionPooling(nn.Module):
    """Learned additive attention over token states, padding masked out: [B, T, D] -> [B, D]."""

    def __init__(self, dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, hidden)
        self.score = nn.Linear(hidden, 1, bias=False)

    def attention(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s = self.score(torch.tanh(self.proj(x)))[..., 0]  # [B, T]
        s = s.masked_fill(~mask, float("-inf"))
        return torch.nan_to_num(torch.softmax(s, dim=1), nan=0.0)  # a row with no tokens -> 0

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return torch.einsum("bt,btd->bd", self.attention(x, mask), x)


class SoftAlign(nn.Module):
    """Decomposable attention (Parikh et al. 2016) between the two texts of each pair: every
    token state, projected, is compared with its attention-weighted match in the other text
    ([a, match, a - match, a * match] through a small layer), and the comparisons are reduced
    by masked mean and max. Rows come as pair networks read them: the B first texts, then the
    B second ones ([2B, T, D] -> [2B, 2 * width]); each text's vector depends on its partner.

    Where the cosines and alignment statistics of `combine` summarise fixed token matches,
    this learns which tokens to match and what a mismatch means for the label."""

    def __init__(self, dim: int, width: int) -> None:
        super().__init__()
        self.width = width
        self.proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, width), nn.GELU())
        self.compare = nn.Sequential(nn.Linear(4 * width, width), nn.GELU())
        self.out_dim = 2 * width

    def _side(self, a: torch.Tensor, mask_a: torch.Tensor, b: torch.Tensor,
              mask_b: torch.Tensor) -> torch.Tensor:
        scores = a @ b.transpose(1, 2) / self.width ** 0.5  # [B, Ta, Tb]
        scores = scores.masked_fill(~mask_b[:, None, :], float("-inf"))
        weights = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)  # b has no tokens
        match = weights @ b
        v = self.compare(torch.cat([a, match, a - match, a * match], dim=-1))
        m = mask_a[..., None]
        mean = (v * m).sum(1) / m.sum(1).clamp(min=1)
        top = v.masked_fill(~m, float("-inf")).max(1).values
        return torch.cat([mean, torch.where(torch.isfinite(top), top, 0.0)], dim=-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        if x.shape[0] % 2:
            raise HeadError("soft-align reads pairs: the first texts, then the second ones")
        used = max(1, int(mask.sum(1).max()))  # the batch's longest text, not the store's
        h, mask = self.proj(x[:, :used]), mask[:, :used]
        half = x.shape[0] // 2
        a, b, ma, mb = h[:half], h[half:], mask[:half], mask[half:]
        return torch.cat([self._side(a, ma, b, mb), self._side(b, mb, a, ma)])


def pooling_module(pool: str, n_layers: int, dim: int, hidden: int) -> nn.Module:
    """The torch module of a trainable pooling and the width it outputs (`out_dim`)."""
    if pool == "weighted":
        m: nn.Module = WeightedLayers(n_layers)
        m.out_dim = dim
    elif pool == "lstm":
        m = LSTMOverLayers(dim, min(hidden, LSTM_WIDTH))
    elif pool == "attention":
        m = AttentionPooling(dim)
        m.out_dim = dim
    elif pool == "soft-align":
        m = SoftAlign(dim, min(hidden, SOFT_ALIGN_WIDTH))
    else:
        raise HeadError(f"pooling {pool!r} has no trainable module")
    return m


def pad_tokens(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged [T_i, D] rows -> zero-padded [n, T_max, D] and a boolean mask [n, T_max]."""
    t_max = max((len(r) for r in rows), default=0)
    t_max = max(t_max, 1)
    dim = rows[0].shape[-1] if rows else 0
    out = np.zeros((len(rows), t_max, dim), dtype=np.float32)
    mask = np.zeros((len(rows), t_max), dtype=bool)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
        mask[i, : len(r)] = True
    return out, mask
