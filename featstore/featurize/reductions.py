"""Per-layer reductions computed on the encoder's device, so only [batch, layers, hidden] leaves it.

CLS is the hidden state at the architecture's summary position (first token for BERT-likes, last
real token for left-summarising models) — never logits, never the pooler. Mean and max honour the
attention mask; max works on a masked copy, never in place on the model's output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from featstore.featurize.errors import EncoderError


def pool_mask(mask: torch.Tensor, separate_cls: bool, truncate_seq: bool) -> torch.Tensor:
    """Downsample a [batch, seq] mask the way Funnel Transformer pools its attention mask."""
    if separate_cls:
        suffix = mask[:, :-1] if truncate_seq else mask
        mask = torch.cat([mask[:, :1], suffix], dim=1)
    m = mask[:, None, :, None].float()
    return (-torch.nn.functional.max_pool2d(-m, (2, 1), stride=(2, 1), ceil_mode=True))[:, 0, :, 0]


def masks_for_lengths(mask: torch.Tensor, lengths: Sequence[int], separate_cls: bool = True,
                      truncate_seq: bool = False) -> dict[int, torch.Tensor]:
    """A mask per distinct sequence length among the hidden states (pooled as needed)."""
    out = {mask.shape[1]: mask}
    cur = mask
    for _ in range(32):
        if all(n in out for n in lengths):
            return out
        cur = pool_mask(cur, separate_cls, truncate_seq)
        out.setdefault(cur.shape[1], cur)
    missing = sorted(set(lengths) - set(out))
    raise EncoderError(f"cannot derive an attention mask for hidden states of length {missing}")


def reduce_hidden_states(
    hidden_states: Sequence[torch.Tensor],
    attention_mask: torch.Tensor,
    features: Sequence[str],
    cls_index: torch.Tensor,
    separate_cls: bool = True,
    truncate_seq: bool = False,
) -> dict[str, torch.Tensor]:
    """Reduce each [batch, seq, hidden] layer to [batch, hidden]; stacked: [batch, layers, hidden],
    always float32. Half-precision states are reduced without a float32 copy of each layer: CLS
    and max are exact in any precision, and the mean accumulates in float32. Only the padded tail
    of a layer is masked (copied); the positions every row fills are reduced in place.

    `cls_index` ([batch]) gives the summary token's position in the full-length sequence; for a
    shortened layer it stays valid because Funnel keeps the first token in place.
    """
    masks = masks_for_lengths(attention_mask, [h.shape[1] for h in hidden_states],
                              separate_cls, truncate_seq)
    # Columns every row fills need no mask: only the padded tail is masked (a copy of the tail,
    # not of the layer). Length-sorted batches keep that tail short.
    dense = {n: _full_prefix(m) for n, m in masks.items()}
    rows = torch.arange(attention_mask.shape[0], device=attention_mask.device)
    out: dict[str, list[torch.Tensor]] = {f: [] for f in features}
    for h in hidden_states:
        mask, full = masks[h.shape[1]], dense[h.shape[1]]
        head, tail = h[:, :full], h[:, full:]
        m = mask[:, full:].to(h.dtype).unsqueeze(-1)
        if "cls" in out:
            idx = cls_index.clamp(max=h.shape[1] - 1)
            out["cls"].append(h[rows, idx].float())
        if "mean" in out:
            # float32 sums and counts for any precision (tail * m is exact: m is 0 or 1)
            count = mask.float().sum(1, keepdim=True).clamp(min=1.0)
            total = head.sum(1, dtype=torch.float32)
            if tail.shape[1]:
                total = total + (tail * m).sum(1, dtype=torch.float32)
            out["mean"].append(total / count)
        if "max" in out:
            top = head.amax(1) if full else None
            if tail.shape[1]:
                rest = tail.masked_fill(m == 0, torch.finfo(h.dtype).min).amax(1)
                top = rest if top is None else torch.maximum(top, rest)
            out["max"].append(top.float())
    return {f: torch.stack(v, dim=1) for f, v in out.items()}


def _full_prefix(mask: torch.Tensor) -> int:
    """How many leading positions hold a real token in every row (right padding)."""
    filled = mask.bool().all(0)
    return int(filled.long().cumprod(0).sum())
