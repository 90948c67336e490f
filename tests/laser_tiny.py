"""A tiny, seeded LASER model laid out exactly like the real download.

The real files are ~200 MB and need the network; this writes the same three files with the
same structure (fastBPE codes, fastBPE vocabulary, BiLSTM checkpoint dict) at toy size, so
laserembeddings runs its full tokenise -> BPE -> BiLSTM -> max-pool path in milliseconds.
"""

from __future__ import annotations

import pathlib
import string

import torch

CODES_FILE, VOCAB_FILE, ENCODER_FILE = (
    "93langs.fcodes",
    "93langs.fvocab",
    "bilstm.93langs.2018-12-26.pt",
)

# Merges in priority order; "</w>" marks a word-final symbol (subword-nmt 0.2 / fastBPE).
MERGES: tuple[tuple[str, str], ...] = (
    ("t", "h"),
    ("th", "e</w>"),
    ("i", "n"),
    ("in", "g</w>"),
    ("e", "r"),
    ("a", "n"),
    ("an", "d</w>"),
    ("o", "n"),
    ("o", "n</w>"),
    ("r", "e"),
    ("e", "s</w>"),
    ("e", "d</w>"),
    ("o", "u"),
    ("h", "e</w>"),
    ("a", "t</w>"),
    ("e", "n"),
    ("o", "r"),
    ("l", "l"),
    ("s", "t"),
)
SYMBOLS = string.ascii_lowercase + string.digits + ".,!?'-\""
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # fairseq order: pad=1, eos=2, unk=3


def _vocabulary() -> list[str]:
    """BPE units as the vocabulary spells them: non-final units carry the "@@" suffix."""
    units = [s + "@@" for s in SYMBOLS] + list(SYMBOLS)
    for left, right in MERGES:
        merged = left + right
        units.append(merged[: -len("</w>")] if merged.endswith("</w>") else merged + "@@")
    return list(dict.fromkeys(units))


def _uniform(gen: torch.Generator, *shape: int, scale: float) -> torch.Tensor:
    return (torch.rand(*shape, generator=gen) * 2 - 1) * scale


def build_tiny_laser(directory: pathlib.Path, dim_hidden: int = 8, seed: int = 0) -> pathlib.Path:
    """Write 93langs.fcodes, 93langs.fvocab and the BiLSTM checkpoint into ``directory``.

    The checkpoint is a plain dict (``params``, ``model``, ``dictionary``) of ints, floats,
    bools, strings and tensors, so it loads with ``torch.load(..., weights_only=True)``.
    The same seed gives byte-identical files.
    """
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = _vocabulary()

    # fastBPE layout ("left right count"); laserembeddings drops the count for subword-nmt.
    codes = "".join(f"{a} {b} {1000 - i}\n" for i, (a, b) in enumerate(MERGES))
    (directory / CODES_FILE).write_text(codes, encoding="utf-8")
    counts = "".join(f"{unit} {len(vocab) - i}\n" for i, unit in enumerate(vocab))
    (directory / VOCAB_FILE).write_text(counts, encoding="utf-8")

    dictionary = {tok: i for i, tok in enumerate(SPECIALS + tuple(vocab))}
    embed_dim, num_layers, hidden = 6, 2, dim_hidden
    params = {
        "num_embeddings": len(dictionary),
        "padding_idx": dictionary["<pad>"],
        "embed_dim": embed_dim,
        "hidden_size": hidden,
        "num_layers": num_layers,
        "bidirectional": True,
        "left_pad": True,
        "padding_value": 0.0,
    }
    gen = torch.Generator().manual_seed(seed)
    embedding = _uniform(gen, len(dictionary), embed_dim, scale=1.0)
    embedding[params["padding_idx"]] = 0.0  # as nn.Embedding(padding_idx=...) initialises it
    model = {"embed_tokens.weight": embedding}
    bound = hidden**-0.5
    for layer in range(num_layers):
        in_dim = embed_dim if layer == 0 else 2 * hidden
        for suffix in ("", "_reverse"):
            key = f"l{layer}{suffix}"
            model[f"lstm.weight_ih_{key}"] = _uniform(gen, 4 * hidden, in_dim, scale=bound)
            model[f"lstm.weight_hh_{key}"] = _uniform(gen, 4 * hidden, hidden, scale=bound)
            model[f"lstm.bias_ih_{key}"] = _uniform(gen, 4 * hidden, scale=bound)
            model[f"lstm.bias_hh_{key}"] = _uniform(gen, 4 * hidden, scale=bound)

    checkpoint = {"params": params, "model": model, "dictionary": dictionary}
    torch.save(checkpoint, directory / ENCODER_FILE)
    return directory
