"""Shared fixtures: tiny random encoders built from configs (no download), and a store path."""

from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

WORDS = [
    "the",
    "a",
    "an",
    "is",
    "are",
    "was",
    "be",
    "to",
    "of",
    "and",
    "in",
    "on",
    "for",
    "with",
    "my",
    "i",
    "you",
    "it",
    "this",
    "that",
    "not",
    "no",
    "card",
    "money",
    "bank",
    "transfer",
    "account",
    "help",
    "please",
    "lost",
    "stolen",
    "new",
    "refund",
    "balance",
    "address",
    "good",
    "bad",
    "great",
    "movie",
    "film",
    "very",
    "really",
    "love",
    "hate",
]


def _vocab() -> list[str]:
    letters = list(string.ascii_lowercase + string.digits + string.punctuation)
    return [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *letters,
        *[f"##{c}" for c in string.ascii_lowercase + string.digits],
        *WORDS,
    ]


def build_tiny_model(kind: str, directory: Path, seed: int = 0) -> Path:
    """Save a tiny random `kind` encoder and a WordPiece tokenizer into `directory`."""
    from transformers import (
        BertConfig,
        BertModel,
        BertTokenizerFast,
        DistilBertConfig,
        DistilBertModel,
        FunnelConfig,
        FunnelModel,
        MPNetConfig,
        MPNetModel,
        RobertaConfig,
        RobertaModel,
    )

    directory.mkdir(parents=True, exist_ok=True)
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(_vocab()) + "\n")
    tok = BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True, model_max_length=64)
    tok.save_pretrained(directory)
    common = {"vocab_size": len(_vocab()), "pad_token_id": 0}
    if kind == "bert":
        config, cls = (
            BertConfig(
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=64,
                max_position_embeddings=64,
                **common,
            ),
            BertModel,
        )
    elif kind == "roberta":
        config, cls = (
            RobertaConfig(
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=64,
                max_position_embeddings=66,
                type_vocab_size=1,
                **common,
            ),
            RobertaModel,
        )
    elif kind == "distilbert":
        config, cls = (
            DistilBertConfig(
                dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64, **common
            ),
            DistilBertModel,
        )
    elif kind == "mpnet":  # relative position bias, explicit attention in transformers
        config, cls = (
            MPNetConfig(
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=64,
                max_position_embeddings=66,
                relative_attention_num_buckets=32,  # what its position bias reads
                **common,
            ),
            MPNetModel,
        )
    elif kind == "funnel":
        config, cls = (
            FunnelConfig(
                d_model=32,
                n_head=2,
                d_head=16,
                d_inner=64,
                block_sizes=[1, 1, 1],
                num_decoder_layers=1,
                **common,
            ),
            FunnelModel,
        )
    else:
        raise ValueError(kind)
    torch.manual_seed(seed)
    model = cls(config).eval()
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """tiny_model_dir("bert" | "roberta" | "distilbert" | "mpnet" | "funnel") -> saved model
    directory."""
    built: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in built:
            built[kind] = build_tiny_model(kind, tmp_path_factory.mktemp(f"tiny-{kind}"))
        return built[kind]

    return get


@pytest.fixture(autouse=True, scope="session")
def _float32_auto() -> None:
    # `--compute-dtype auto` means float32 in every test in this process, whatever this CPU's
    # matrix units, module-scoped fixtures included; tests of bfloat16 ask for it, and tests
    # that compare vectors of two runs run under both (tests/consistency.py). Subprocesses and
    # Ray workers are not patched: tests that start them name the compute dtype.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("featstore.featurize.cpu_features.cpu_has_native_bf16", lambda: False)
        yield


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Tests never see a user's store or LASER models unless they ask, and write nothing into
    # the directory they were started from (charts land in the current directory by default).
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FEATSTORE_DIR", raising=False)
    monkeypatch.delenv("FEATSTORE_LASER_DIR", raising=False)
    # Each test starts with an empty fingerprint cache of its own, never the user's.
    monkeypatch.setenv("FEATSTORE_CACHE_DIR", str(tmp_path / "featstore-cache"))
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
