"""featurize's CPU attention (featstore.featurize.attention) computes what the stock code does:
`attend` against the textbook formula on every path (short keys, padded keys, the fused kernel)
and every mask form, and whole encoders (BERT-likes through transformers' attention interface,
MPNet through swapped modules) against their stock hidden states; a swap that would change them
is undone."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from test_featurize_equivalence import TEXTS, reference
from transformers import AutoModel, AutoTokenizer
from transformers.models.mpnet.modeling_mpnet import MPNetSelfAttention

from featstore.featurize import attention
from featstore.featurize.attention import ATTENTION, SdpaSelfAttention, attend
from featstore.featurize.encoder import Encoder

# key lengths on each side of every path boundary: explicit below 16, padded keys up to 64
LENGTHS = (1, 2, 7, 15, 16, 17, 24, 31, 32, 33, 47, 63, 64, 65, 80)


def textbook(q, k, v, keep, bias):
    """softmax(q k^T / sqrt(d) + bias, masked) v in float64."""
    q, k, v = q.double(), k.double(), v.double()
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5 + bias.double()
    scores = scores.masked_fill(~keep, float("-inf"))
    return (scores.softmax(-1) @ v).float()


@pytest.mark.parametrize("length, form", list(itertools.product(LENGTHS, ["none", "bool", "float",
                                                                      "bias"])))
def test_attend_is_the_textbook_formula_on_every_path(length, form):
    gen = torch.Generator().manual_seed(length)
    batch, heads, dim = 3, 2, 8
    q, k, v = (torch.randn(batch, heads, length, dim, generator=gen) for _ in range(3))
    lengths = torch.tensor([length, max(1, length // 2), max(1, length - 3)])
    keep = (torch.arange(length)[None, :] < lengths[:, None])[:, None, None, :]
    bias = torch.zeros(batch, heads, length, length)
    if form == "none":
        keep, mask = torch.ones_like(keep), None
    elif form == "bool":
        mask = keep
    elif form == "float":  # transformers' additive mask: the dtype's minimum where padded
        mask = torch.zeros(batch, 1, 1, length).masked_fill(~keep, torch.finfo(torch.float32).min)
    else:  # MPNet: a position bias per head plus the padding mask
        bias = torch.randn(batch, heads, length, length, generator=gen)
        mask = bias.masked_fill(~keep, torch.finfo(torch.float32).min)
    got = attend(q, k, v, mask)
    assert got.shape == (batch, heads, length, dim)
    torch.testing.assert_close(got, textbook(q, k, v, keep, bias), rtol=1e-5, atol=1e-5)


def test_attend_in_bfloat16_stays_near_float32():
    gen = torch.Generator().manual_seed(0)
    for length in (8, 20, 48, 96):
        q, k, v = (torch.randn(4, 2, length, 16, generator=gen) for _ in range(3))
        keep = (torch.arange(length)[None, :] < torch.tensor([length, 3, 5, length - 1])[:, None]
                )[:, None, None, :]
        want = attend(q, k, v, keep)
        got = attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), keep).float()
        assert (got - want).abs().max() < 0.05 * want.abs().max(), length


def stock_and_encoder(model_dir, compute: str = "float32"):
    stock = AutoModel.from_pretrained(model_dir).eval()
    enc = Encoder(str(model_dir), device="cpu", dtype="float32", runtime="torch",
                  compute_dtype=compute)
    return stock, enc


def assert_same_hidden_states(stock, model, tok, texts):
    batch = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    real = batch["attention_mask"].bool()
    assert not real.all()  # padded: the mask counts
    with torch.no_grad():
        want = stock(**batch, output_hidden_states=True).hidden_states
        got = model(**batch, output_hidden_states=True).hidden_states
    for w, g in zip(want, got, strict=True):
        torch.testing.assert_close(g[real], w[real], rtol=1e-5, atol=1e-5)


# batches whose longest text falls on each of attend's paths for the tiny WordPiece models
# (the last one is cut at the tiny models' 64 positions)
BATCHES = [TEXTS[:3], TEXTS, [" ".join(TEXTS)] + TEXTS[:2]]


@pytest.mark.parametrize("kind", ["bert", "roberta", "distilbert"])
def test_interface_models_use_featstore_attention_with_the_stock_hidden_states(
        kind, tiny_model_dir):
    model_dir = tiny_model_dir(kind)
    stock, enc = stock_and_encoder(model_dir)
    assert enc.fused_attention
    assert enc.model.config._attn_implementation == ATTENTION
    assert stock.config._attn_implementation == "sdpa"
    tok = AutoTokenizer.from_pretrained(model_dir)
    widths = set()
    for texts in BATCHES:
        widths.add(tok(texts, padding=True, truncation=True, max_length=64,
                       return_tensors="pt")["input_ids"].shape[1])
        assert_same_hidden_states(stock, enc.model, tok, texts)
    # the batches took the explicit path, the padded-keys path and the fused kernel unpadded
    assert min(widths) < 16 and any(16 < w < 64 and w % 16 for w in widths) and max(widths) >= 64


def test_mpnet_attention_is_swapped_and_keeps_the_stock_hidden_states(tiny_model_dir):
    model_dir = tiny_model_dir("mpnet")
    stock, enc = stock_and_encoder(model_dir)
    layers = stock.config.num_hidden_layers
    assert enc.fused_attention
    assert sum(isinstance(m, SdpaSelfAttention) for m in enc.model.modules()) == layers
    assert not any(type(m) is MPNetSelfAttention for m in enc.model.modules())
    # the swapped modules share the stock parameters under the same names
    assert set(enc.model.state_dict()) == set(stock.state_dict())
    tok = AutoTokenizer.from_pretrained(model_dir)
    for texts in BATCHES:  # batches of other shapes in one model: no summed mask reused
        assert_same_hidden_states(stock, enc.model, tok, texts)
    with pytest.raises(ValueError, match="no attention weights"):
        enc.model(**tok(TEXTS[:2], padding=True, return_tensors="pt"), output_attentions=True)


@pytest.mark.parametrize("kind", ["bert", "mpnet"])
def test_featstore_attention_is_undone_when_it_changes_outputs(kind, tiny_model_dir,
                                                               monkeypatch):
    real_attend = attention.attend

    def wrong(*args, **kwargs):
        return real_attend(*args, **kwargs) * 1.5  # (a constant would vanish in a layer norm)

    monkeypatch.setattr(attention, "attend", wrong)
    model_dir = tiny_model_dir(kind)
    _, enc = stock_and_encoder(model_dir)
    assert not enc.fused_attention
    assert enc.model.config._attn_implementation == ("sdpa" if kind == "bert" else "eager")
    assert not any(isinstance(m, SdpaSelfAttention) for m in enc.model.modules())
    feats, _ = enc.forward([enc.tokenizer("my card was lost")["input_ids"]])
    ref = reference(model_dir, ["my card was lost"])
    np.testing.assert_allclose(feats["mean"], ref["mean"], atol=1e-5)


def test_models_without_an_attention_featstore_can_take_are_left_as_loaded(tiny_model_dir):
    _, enc = stock_and_encoder(tiny_model_dir("funnel"))
    assert not enc.fused_attention
    assert enc.model.config._attn_implementation != ATTENTION
    assert not any(isinstance(m, SdpaSelfAttention) for m in enc.model.modules())


@pytest.mark.parametrize("kind", ["bert", "mpnet"])
def test_a_probe_that_fails_leaves_the_model_as_loaded(kind, tiny_model_dir):
    model = AutoModel.from_pretrained(tiny_model_dir(kind)).eval()
    before = model.config._attn_implementation

    def probe():
        raise IndexError("hidden states of another length")

    assert attention.use_fused_attention(model, probe) is False
    assert model.config._attn_implementation == before
    assert not any(isinstance(m, SdpaSelfAttention) for m in model.modules())
