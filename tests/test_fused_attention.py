"""Encoders whose transformers code has only explicit attention (MPNet) run on torch's fused
scaled-dot-product kernel in featurize, with the same hidden states as the stock modules; a swap
that would change them is undone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_featurize_equivalence import TEXTS, reference
from transformers import AutoModel, AutoTokenizer
from transformers.models.mpnet.modeling_mpnet import MPNetSelfAttention

from featstore.featurize.attention import SdpaSelfAttention
from featstore.featurize.encoder import Encoder


def stock_and_encoder(model_dir, compute: str = "float32"):
    stock = AutoModel.from_pretrained(model_dir).eval()
    enc = Encoder(str(model_dir), device="cpu", dtype="float32", runtime="torch",
                  compute_dtype=compute)
    return stock, enc


def test_mpnet_attention_is_fused_and_keeps_the_stock_hidden_states(tiny_model_dir):
    model_dir = tiny_model_dir("mpnet")
    stock, enc = stock_and_encoder(model_dir)
    layers = stock.config.num_hidden_layers
    assert enc.fused_attention == layers
    assert sum(isinstance(m, SdpaSelfAttention) for m in enc.model.modules()) == layers
    assert not any(type(m) is MPNetSelfAttention for m in enc.model.modules())
    # the swapped modules share the stock parameters under the same names
    assert set(enc.model.state_dict()) == set(stock.state_dict())
    batch = AutoTokenizer.from_pretrained(model_dir)(TEXTS, padding=True, return_tensors="pt")
    real = batch["attention_mask"].bool()
    assert not real.all()  # the batch is padded: the mask and the position bias both count
    with torch.no_grad():
        want = stock(**batch, output_hidden_states=True).hidden_states
        got = enc.model(**batch, output_hidden_states=True).hidden_states
        # a second batch of another shape in the same model: the summed mask is not reused
        short = AutoTokenizer.from_pretrained(model_dir)(TEXTS[:3], padding=True,
                                                         return_tensors="pt")
        want_short = stock(**short, output_hidden_states=True).hidden_states[-1]
        got_short = enc.model(**short, output_hidden_states=True).hidden_states[-1]
    for w, g in zip(want, got, strict=True):
        torch.testing.assert_close(g[real], w[real], rtol=1e-5, atol=1e-5)
    keep = short["attention_mask"].bool()
    torch.testing.assert_close(got_short[keep], want_short[keep], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="no attention weights"):
        enc.model(**short, output_attentions=True)


def test_fused_attention_is_undone_when_it_changes_outputs(tiny_model_dir, monkeypatch):
    real_forward = SdpaSelfAttention.forward

    def wrong(self, *args, **kwargs):
        return (real_forward(self, *args, **kwargs)[0] * 1.5,)  # (a constant would vanish in
        # the layer norm that follows)

    monkeypatch.setattr(SdpaSelfAttention, "forward", wrong)
    model_dir = tiny_model_dir("mpnet")
    _, enc = stock_and_encoder(model_dir)
    assert enc.fused_attention == 0
    assert not any(isinstance(m, SdpaSelfAttention) for m in enc.model.modules())
    feats, _ = enc.forward([enc.tokenizer("my card was lost")["input_ids"]])
    ref = reference(model_dir, ["my card was lost"])
    np.testing.assert_allclose(feats["mean"], ref["mean"], atol=1e-5)


@pytest.mark.parametrize("kind", ["bert", "roberta", "distilbert", "funnel"])
def test_models_with_fused_attention_of_their_own_are_left_as_loaded(kind, tiny_model_dir):
    _, enc = stock_and_encoder(tiny_model_dir(kind))
    assert enc.fused_attention == 0
    assert not any(isinstance(m, SdpaSelfAttention) for m in enc.model.modules())
