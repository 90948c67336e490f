"""Pairs of texts encoded jointly: the tokenizer's own pair encoding (`[CLS] A [SEP] B [SEP]` for
BERT, `<s> A </s></s> B </s>` for RoBERTa), windows of pairs too long for one pass, the forward
pass, and shards of per-layer CLS/mean/max (plus a sequence-classification model's logits) keyed
by the ordered pair.

The pair encoding is read off the tokenizer once as a template (the special tokens before,
between and after the two texts, and each part's token type), checked against the tokenizer's
own output, and then applied to token ids: that is what lets a long pair be windowed without
cutting anything. A pair within `max_length` is exactly what `tokenizer(a, b)` gives; a longer
one becomes windows of the longer text beside the whole shorter one (both cut into windows when
neither fits in half), and its vectors are the average of its windows' (max of max), as for a
long text. With `truncate`, one window cut the way `truncation="longest_first"` cuts it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from featstore.featurize.batching import token_budget_batches
from featstore.featurize.encoder import Encoder, to_device, to_host
from featstore.featurize.errors import EncoderError
from featstore.featurize.pair_facts import LOGITS, PairTemplate, pair_template
from featstore.featurize.reductions import reduce_hidden_states
from featstore.featurize.shard_encoding import EncodedShard, combine_windows


def _chunks(ids: list[int], width: int, stride: int) -> list[list[int]]:
    """Windows of `width` tokens overlapping by `stride`, covering every token."""
    if len(ids) <= width:
        return [ids]
    step = max(1, width - min(stride, width // 2))
    out = []
    for start in range(0, len(ids), step):
        out.append(ids[start:start + width])
        if start + width >= len(ids):
            break
    return out


def longest_first(la: int, lb: int, budget: int) -> tuple[int, int]:
    """The lengths `truncation="longest_first"` keeps (the tokenizers library's rule): the
    longer text is cut to leave the shorter whole where it can, else both to half the budget,
    the longer one taking the odd token."""
    if la + lb <= budget:
        return la, lb
    swap = la > lb
    n1, n2 = (lb, la) if swap else (la, lb)  # n1: the shorter
    n2 = n1 if n1 > budget else max(n1, budget - n1)
    if n1 + n2 > budget:
        n1 = budget // 2
        n2 = n1 + budget % 2
    return (n2, n1) if swap else (n1, n2)


def pair_windows(template: PairTemplate, a: list[int], b: list[int], max_length: int,
                 stride: int, truncate: bool) -> list[tuple[list[int], list[int]]]:
    """(input ids, token types) of each window of the pair (a, b) of token ids; see the
    module docstring."""
    budget = max_length - template.specials
    if budget < 2:
        raise EncoderError(f"--max-length {max_length} leaves no room for a pair")
    if len(a) + len(b) <= budget:
        return [template.build(a, b)]
    if truncate:
        na, nb = longest_first(len(a), len(b), budget)
        return [template.build(a[:na], b[:nb])]
    half = budget // 2
    if len(b) >= len(a) and len(a) <= half:
        return [template.build(a, part) for part in _chunks(b, budget - len(a), stride)]
    if len(a) > len(b) and len(b) <= budget - half:
        return [template.build(part, b) for part in _chunks(a, budget - len(b), stride)]
    return [template.build(pa, pb) for pa in _chunks(a, half, stride)
            for pb in _chunks(b, budget - half, stride)]


@dataclass
class PairWindows:
    """Token windows of a list of pairs; `owner[i]` is the pair window i belongs to."""

    input_ids: list[list[int]]
    token_types: list[list[int]]
    owner: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64,
                           count=len(self.input_ids))


class CrossEncoder:
    """An encoder's model fed pairs jointly. A sequence-classification checkpoint (a real
    cross-encoder) is loaded as one, so its logits come with the hidden states; its hidden
    states must equal the encoder's (the same weights), else the files changed."""

    def __init__(self, encoder: Encoder, logits: int = 0) -> None:
        self.encoder = encoder
        self.template = pair_template(encoder.tokenizer, encoder.name)
        self.logits = logits
        self.types = "token_type_ids" in getattr(encoder.tokenizer, "model_input_names", ())
        config = encoder.config
        self.separate_cls = bool(getattr(config, "separate_cls", True))
        self.truncate_seq = bool(getattr(config, "truncate_seq", False))
        self.model = encoder.model
        if logits:
            self.model = self._classifier()

    def _classifier(self) -> torch.nn.Module:
        from transformers import AutoModelForSequenceClassification

        enc = self.encoder
        try:
            net = AutoModelForSequenceClassification.from_pretrained(enc.source,
                                                                     config=enc.config)
        except (OSError, ValueError, KeyError) as exc:
            raise EncoderError(f"cannot load model {enc.name!r} as a sequence classifier: "
                               f"{str(exc).strip().splitlines()[0] if str(exc) else exc}"
                               ) from None
        net = net.eval().to(enc.device)
        for p in net.parameters():
            p.requires_grad_(False)
        if enc.half_weights:
            net.to(torch.bfloat16)
        ids = torch.tensor([[*self.template.prefix, *self.template.middle,
                             *self.template.suffix]], device=enc.device)
        with torch.inference_mode():
            mine = net(input_ids=ids, output_hidden_states=True).hidden_states[-1].float()
            theirs = enc.model(input_ids=ids, output_hidden_states=True).hidden_states[-1].float()
        if mine.shape != theirs.shape or not torch.allclose(mine, theirs, rtol=1e-2, atol=1e-2):
            raise EncoderError(f"the files of model {enc.name} changed since this pass began; "
                               "nothing was written for its pairs: run the pass again")
        return net

    def windows(self, pairs: Sequence[tuple[str, str]]) -> PairWindows:
        """Tokenize both sides (no special tokens), then build each pair's windows."""
        tok, enc = self.encoder.tokenizer, self.encoder
        if not pairs:
            return PairWindows([], [], np.empty(0, dtype=np.int64))
        side_a = tok([p[0] for p in pairs], add_special_tokens=False)["input_ids"]
        side_b = tok([p[1] for p in pairs], add_special_tokens=False)["input_ids"]
        ids, types, owner = [], [], []
        for i, (a, b) in enumerate(zip(side_a, side_b, strict=True)):
            for w_ids, w_types in pair_windows(self.template, list(a), list(b),
                                               enc.max_length, enc.stride, enc.truncate):
                ids.append(w_ids)
                types.append(w_types)
                owner.append(i)
        return PairWindows(ids, types, np.asarray(owner, dtype=np.int64))

    def _pad(self, ids: Sequence[Sequence[int]], types: Sequence[Sequence[int]]
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        enc = self.encoder
        lengths = [len(x) for x in ids]
        width = max(max(lengths), enc.min_length)
        pad = enc.tokenizer.pad_token_id
        out_ids = np.full((len(ids), width), pad, dtype=np.int64)
        out_types = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        left = enc.tokenizer.padding_side == "left"
        for i, (row, trow, n) in enumerate(zip(ids, types, lengths, strict=True)):
            span = slice(width - n, width) if left else slice(0, n)
            out_ids[i, span] = row
            out_types[i, span] = trow
            mask[i, span] = 1
        return torch.from_numpy(out_ids), torch.from_numpy(out_types), torch.from_numpy(mask)

    def forward(self, ids: Sequence[Sequence[int]], types: Sequence[Sequence[int]]
                ) -> dict[str, np.ndarray]:
        """{feature: [batch, layers, hidden]} of a batch of pair windows, plus `logits`
        [batch, labels] for a sequence classifier."""
        enc = self.encoder
        host_ids, host_types, host_mask = self._pad(ids, types)
        inputs = {"input_ids": to_device(host_ids, enc.device),
                  "attention_mask": to_device(host_mask, enc.device)}
        if self.types:
            inputs["token_type_ids"] = to_device(host_types, enc.device)
        mask = inputs["attention_mask"]
        out_dtype = torch.float16 if enc.dtype == "float16" else torch.float32
        autocast = None if enc.half_weights else enc.compute_dtype
        with torch.inference_mode(), _compute_context(enc.device, autocast):
            out = self.model(**inputs, output_hidden_states=True)
            states = [out.hidden_states[i] for i in enc.layers]
            if enc.cls_last:
                cls_index = (mask.sum(1) - 1 if enc.tokenizer.padding_side == "right"
                             else torch.full_like(mask[:, 0], mask.shape[1] - 1))
            else:
                cls_index = torch.zeros_like(mask[:, 0])
            layered = [f for f in enc.features if f != "pooler"]
            red = reduce_hidden_states(states, mask, layered, cls_index, self.separate_cls,
                                       self.truncate_seq)
            if self.logits:
                red[LOGITS] = out.logits.float()
            return to_host({k: v.to(out_dtype) for k, v in red.items()})

    def feature_shapes(self) -> dict[str, list[int]]:
        enc = self.encoder
        shapes = {f: [len(enc.layers), enc.hidden] for f in enc.features if f != "pooler"}
        if self.logits:
            shapes[LOGITS] = [self.logits]
        return shapes


def _compute_context(device: torch.device, dtype: torch.dtype | None):  # noqa: ANN202
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


def encode_pair_shards(cross: CrossEncoder, keys: list[str], pairs: list[tuple[str, str]], *,
                       shard_rows: int, batch_tokens: int,
                       only: Sequence[str] | None = None) -> Iterator[EncodedShard]:
    """Window, batch and encode pairs jointly; yield shards of at most `shard_rows` pairs keyed
    by pair. `only`: the features the pairs still lack."""
    win = cross.windows(pairs)
    lengths = win.lengths
    pair_len = np.zeros(len(pairs), dtype=np.int64)
    np.maximum.at(pair_len, win.owner, lengths)
    order = np.argsort(-pair_len, kind="stable")
    window_of: list[list[int]] = [[] for _ in pairs]
    for w, p in enumerate(win.owner.tolist()):
        window_of[p].append(w)
    for s in range(0, len(order), shard_rows):
        group = order[s:s + shard_rows]
        wins = np.array([w for p in group for w in window_of[p]], dtype=np.int64)
        local = {int(p): i for i, p in enumerate(group)}
        owners = np.array([local[int(win.owner[w])] for w in wins], dtype=np.int64)
        per_window: dict[str, np.ndarray] = {}
        for batch in token_budget_batches(lengths[wins], batch_tokens,
                                          same_length=not cross.encoder.padding_invariant):
            feats = cross.forward([win.input_ids[w] for w in wins[batch]],
                                  [win.token_types[w] for w in wins[batch]])
            for name, arr in feats.items():
                if name not in per_window:
                    per_window[name] = np.empty((len(wins), *arr.shape[1:]), dtype=arr.dtype)
                per_window[name][batch] = arr
        n_windows = np.bincount(owners, minlength=len(group)).astype(np.int32)
        feats = combine_windows(per_window, owners, n_windows)
        if only is not None:
            feats = {k: v for k, v in feats.items() if k in only}
        meta = {"n_windows": n_windows,
                "n_tokens": np.array([sum(int(lengths[w]) for w in window_of[p])
                                      for p in group], dtype=np.int32)}
        yield EncodedShard([keys[p] for p in group], feats, None, meta, len(wins),
                           {"compute_dtype": cross.encoder.compute_dtype_name})
