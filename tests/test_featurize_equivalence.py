"""The fast featurize path (oneDNN linears, fused attention, batching, padding, reductions)
stores the same values as a plain per-text forward pass of the stock model, whatever the batch
composition."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from consistency import assert_near_reference, assert_same_text_same_vector
from transformers import AutoModel, AutoTokenizer

import featstore
from featstore.featurize import encoder as encoder_mod
from featstore.featurize.driver import featurize_texts
from featstore.featurize.encoder import Encoder
from featstore.featurize.options import FeaturizeOptions

TEXTS = [
    "hi",
    "my card was lost",
    "refund",
    "the bank is good",
    "please help me transfer money to my account",
    "i love this film very much it is great really great and good",
    "no",
    "my new card",
    "you are not good",
    "transfer",
    "this movie was very bad and i hate it",
    "lost card",
    "where is my money",
]
ATOL = 2e-2  # float16 storage


def reference(model_dir, texts: list[str]) -> dict[str, np.ndarray]:
    """Stock model, one text at a time, no padding: per-layer CLS, mean, max in float32."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    out: dict[str, list[np.ndarray]] = {"cls": [], "mean": [], "max": []}
    for text in texts:
        ids = tok(text, return_tensors="pt")
        with torch.no_grad():
            hs = model(**ids, output_hidden_states=True).hidden_states
        out["cls"].append(np.stack([h[0, 0].numpy() for h in hs]))
        out["mean"].append(np.stack([h[0].mean(0).numpy() for h in hs]))
        out["max"].append(np.stack([h[0].amax(0).numpy() for h in hs]))
    return {k: np.stack(v) for k, v in out.items()}


def stored(store_dir, texts: list[str], kind: str) -> np.ndarray:
    return featstore.open(store_dir).features(texts, kind, layers=None).astype(np.float32)


@pytest.mark.parametrize("kind, compute", [("bert", "float32"), ("roberta", "float32"),
                                           ("distilbert", "float32"), ("mpnet", "float32"),
                                           ("bert", "bfloat16"), ("mpnet", "bfloat16")])
def test_stored_features_equal_a_per_text_forward_for_any_batching(kind, compute, tiny_model_dir,
                                                                    tmp_path):
    model_dir = tiny_model_dir(kind)
    ref = reference(model_dir, TEXTS)
    first: dict[str, np.ndarray] = {}
    # 8 tokens per batch: one text per batch; 4096: everything in one padded batch.
    for budget in (8, 40, 4096):
        store = tmp_path / f"s{budget}"
        options = FeaturizeOptions(model=str(model_dir), device="cpu", laser=False,
                                   batch_tokens=budget, features=("cls", "mean", "max"),
                                   compute_dtype=compute)
        featurize_texts(TEXTS, store, options)
        for feat in ("cls", "mean", "max"):
            got = stored(store, TEXTS, feat)
            what = f"{kind} {feat} with batch_tokens={budget}"
            if compute == "float32":
                np.testing.assert_allclose(got, ref[feat], atol=ATOL, err_msg=what)
            assert_near_reference(got, ref[feat], compute, what)
            if feat in first:  # another batch composition: the same text, the same vector
                assert_same_text_same_vector(got, first[feat], compute, what)
            first.setdefault(feat, got)


def test_onednn_linears_are_used_and_match_the_stock_model(tiny_model_dir):
    if not torch.backends.mkldnn.is_available():
        pytest.skip("no oneDNN in this torch build")
    model_dir = tiny_model_dir("bert")
    enc = Encoder(str(model_dir), device="cpu", dtype="float32", runtime="torch")
    assert enc.fast_linears > 0
    assert any(isinstance(m, encoder_mod._OneDnnLinear) and m.act == "gelu"
               for m in enc.model.modules())
    tok = AutoTokenizer.from_pretrained(model_dir)
    stock = AutoModel.from_pretrained(model_dir).eval()
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = stock(**batch, output_hidden_states=True).hidden_states
        got = enc.model(**batch, output_hidden_states=True).hidden_states
    for w, g in zip(want, got, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_onednn_swap_is_undone_when_it_changes_outputs(tiny_model_dir, monkeypatch):
    def wrong(self, x):
        return torch.nn.functional.linear(x, self.weight, self.bias) + 1.0

    monkeypatch.setattr(encoder_mod._OneDnnLinear, "forward", wrong)
    model_dir = tiny_model_dir("bert")
    enc = Encoder(str(model_dir), device="cpu", dtype="float32", runtime="torch")
    assert enc.fast_linears == 0
    assert not any(isinstance(m, encoder_mod._OneDnnLinear) for m in enc.model.modules())
    feats, _ = enc.forward([enc.tokenizer("my card was lost")["input_ids"]])
    ref = reference(model_dir, ["my card was lost"])
    np.testing.assert_allclose(feats["cls"], ref["cls"], atol=1e-5)
