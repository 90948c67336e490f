"""Fused attention for encoders whose transformers code has only explicit (eager) attention.

MPNet (all-mpnet-base-v2, the base-size benchmark encoder) adds a relative position bias to its
attention scores, and transformers runs it as matmul, add, softmax, matmul on [batch, heads, seq,
seq] tensors. torch's scaled-dot-product kernel takes that bias as its float mask and never
writes the score matrix out: on a CPU it ran MPNet's ~300-token texts about 1.4x faster
(docs/SCALING.md). The swap is kept only where the model's hidden states on a padded probe batch
stay those of the stock modules (in float32, before any cast), so a transformers release that
changes MPNet's attention falls back to its own code rather than to wrong vectors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


class _BiasPlusMask:
    """Every layer of one forward gets the same position bias and padding mask: add them once."""

    def __init__(self) -> None:
        self._parts: tuple[torch.Tensor, torch.Tensor] | None = None
        self._sum: torch.Tensor | None = None

    def __call__(self, bias: torch.Tensor | None, mask: torch.Tensor | None
                 ) -> torch.Tensor | None:
        if bias is None or mask is None:
            return mask if bias is None else bias
        if self._parts is None or self._parts[0] is not bias or self._parts[1] is not mask:
            self._parts, self._sum = (bias, mask), bias + mask
        return self._sum


class SdpaSelfAttention(torch.nn.Module):
    """MPNet's self-attention on `scaled_dot_product_attention`, sharing the stock module's
    projections (same parameters, same state-dict names). For a frozen encoder: no dropout and
    no attention weights."""

    def __init__(self, stock: torch.nn.Module, bias_plus_mask: _BiasPlusMask) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = stock.q, stock.k, stock.v, stock.o
        self.head_size = int(stock.attention_head_size)
        self._bias_plus_mask = bias_plus_mask

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_bias: torch.Tensor | None = None, output_attentions: bool = False,
                **kwargs: object) -> tuple[torch.Tensor]:
        if output_attentions:
            raise ValueError("featstore's fused attention computes no attention weights")
        shape = (*hidden_states.shape[:-1], -1, self.head_size)
        q, k, v = (proj(hidden_states).view(shape).transpose(1, 2)
                   for proj in (self.q, self.k, self.v))
        mask = self._bias_plus_mask(position_bias, attention_mask)
        context = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return (self.o(context.transpose(1, 2).reshape(*hidden_states.shape[:-1], -1)),)


def _eager_attention_modules(model: torch.nn.Module) -> list[tuple[torch.nn.Module, str,
                                                                   torch.nn.Module]]:
    try:
        from transformers.models.mpnet.modeling_mpnet import MPNetSelfAttention
    except ImportError:  # a transformers without MPNet has no such modules to swap
        return []
    return [(parent, name, child) for parent in model.modules()
            for name, child in parent.named_children() if type(child) is MPNetSelfAttention]


def use_fused_attention(model: torch.nn.Module,
                        probe: Callable[[], Sequence[torch.Tensor]]) -> int:
    """Swap eager-only attention modules for `SdpaSelfAttention`; kept only if `probe()` (the
    model's hidden states on a padded batch, real positions only) is unchanged within float32
    summation order. Returns how many modules were swapped (0: the model is as loaded)."""
    targets = _eager_attention_modules(model)
    if not targets:
        return 0
    reference = probe()
    shared = _BiasPlusMask()
    try:
        for parent, name, child in targets:
            setattr(parent, name, SdpaSelfAttention(child, shared))
        got = probe()
        if len(got) != len(reference) or not all(
                torch.allclose(a, b, rtol=1e-4, atol=1e-4)
                for a, b in zip(got, reference, strict=True)):
            raise RuntimeError("fused attention changed the model's outputs")
    except Exception:  # any trouble: the stock modules are always correct
        for parent, name, child in targets:
            setattr(parent, name, child)
        return 0
    return len(targets)
