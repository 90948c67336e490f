"""Attention shaped for torch's CPU kernels, for the frozen encoders featurize runs.

Measured on a 2-core Xeon with AMX, bf16 (docs/SCALING.md):
- torch's fused scaled-dot-product kernel is slow on short key lengths: below 16 keys the
  explicit product (two small matmuls and a softmax) is faster, and a key length that is not a
  multiple of 16 (below 64) runs faster padded to one with masked zero keys. Short texts are
  what most corpora hold (Banking77 averages 16 tokens).
- MPNet (all-mpnet-base-v2) adds a relative position bias to its scores, and transformers runs
  it only as explicit matmul, add, softmax, matmul over [batch, heads, seq, seq]: with that bias
  as the fused kernel's float mask, ~300-token texts ran about 1.4x faster.

Models whose attention goes through transformers' attention interface (BERT, RoBERTa,
DistilBERT, ...) get `encoder_attention` under the name `ATTENTION`; MPNet's self-attention
modules are swapped for `SdpaSelfAttention`. Either is kept only where the model's hidden states
on a padded probe batch stay those of the stock code in float32, before any cast, so a
transformers release that changes either falls back to its own code rather than to wrong vectors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from featstore.featurize.precision import same_up_to_summation_order

ATTENTION = "featstore_cpu"  # the name registered with transformers' attention interfaces
_BLOCK = 16  # key lengths the fused CPU kernel runs at full speed are multiples of this
_PAD_BELOW = 64  # padding keys to a multiple of _BLOCK paid below this length


def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
           mask: torch.Tensor | None, scale: float | None = None) -> torch.Tensor:
    """softmax(q k^T * scale + mask) v over [batch, heads, seq, head_dim]; `mask` is None, a
    boolean keep-mask or an additive float mask, broadcastable to the scores."""
    keys = key.shape[-2]
    if keys < _BLOCK:
        scores = torch.matmul(query, key.transpose(-1, -2))
        scores = scores * (query.shape[-1] ** -0.5 if scale is None else scale)
        if mask is not None and mask.dtype == torch.bool:
            scores = scores.masked_fill_(~mask, torch.finfo(scores.dtype).min)
        elif mask is not None:
            scores = scores + mask
        return torch.matmul(scores.softmax(-1), value)
    extra = -keys % _BLOCK
    if extra and keys < _PAD_BELOW:
        if mask is None:
            mask = torch.ones(1, 1, 1, keys, dtype=torch.bool, device=key.device)
        fill = False if mask.dtype == torch.bool else torch.finfo(mask.dtype).min
        mask = F.pad(mask.expand(*mask.shape[:-1], keys), (0, extra), value=fill)
        key, value = F.pad(key, (0, 0, 0, extra)), F.pad(value, (0, 0, 0, extra))
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scale)


def encoder_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                      value: torch.Tensor, attention_mask: torch.Tensor | None,
                      scaling: float | None = None, dropout: float = 0.0,
                      **kwargs: object) -> tuple[torch.Tensor, None]:
    """transformers' attention-interface signature: `attend` for a frozen bidirectional
    encoder; anything else (causal, dropout, extra arguments) goes to transformers' own SDPA."""
    if (dropout or getattr(module, "is_causal", False) or kwargs.get("is_causal")
            or kwargs.get("position_bias") is not None or query.shape[1] != key.shape[1]):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      scaling=scaling, dropout=dropout, **kwargs)
    out = attend(query, key, value, attention_mask, scaling)
    return out.transpose(1, 2).contiguous(), None


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
    """MPNet's self-attention through `attend`, its position bias and padding mask as one float
    mask, sharing the stock module's projections (same parameters, same state-dict names). For
    a frozen encoder: no dropout and no attention weights."""

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
        context = attend(q, k, v, self._bias_plus_mask(position_bias, attention_mask))
        return (self.o(context.transpose(1, 2).reshape(*hidden_states.shape[:-1], -1)),)


def _mpnet_attention_modules(model: torch.nn.Module) -> list[tuple[torch.nn.Module, str,
                                                                   torch.nn.Module]]:
    try:
        from transformers.models.mpnet.modeling_mpnet import MPNetSelfAttention
    except ImportError:  # a transformers without MPNet has no such modules to swap
        return []
    return [(parent, name, child) for parent in model.modules()
            for name, child in parent.named_children() if type(child) is MPNetSelfAttention]


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION, encoder_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)  # the masks SDPA gets


def use_fused_attention(model: torch.nn.Module,
                        probe: Callable[[], Sequence[torch.Tensor]]) -> bool:
    """Run `model`'s attention through `attend` where its code allows (see the module's
    docstring); kept only if `probe()` (its hidden states on a padded batch, real positions
    only) is unchanged within float32 summation order. False: the model is as loaded."""
    swaps = _mpnet_attention_modules(model)
    config = getattr(model, "config", None)
    interface = not swaps and getattr(config, "_attn_implementation", None) == "sdpa"
    if not (swaps or interface):
        return False
    shared = _BiasPlusMask()
    try:
        reference = probe()
        if interface:
            _register()
            model.set_attn_implementation(ATTENTION)
        for parent, name, child in swaps:
            setattr(parent, name, SdpaSelfAttention(child, shared))
        if not same_up_to_summation_order(probe(), reference):
            raise RuntimeError("featstore's attention changed the model's outputs")
    except Exception:  # any trouble: the stock code is always correct
        if interface:
            model.set_attn_implementation("sdpa")
        for parent, name, child in swaps:
            setattr(parent, name, child)
        return False
    return True
