"""Helpers for pair tests: pair corpora for tiny random encoders (and a store of one with token
states), synthetic pair stores with a planted similarity, tiny models that are cross-encoders or
cannot take pairs, and following a token-states refusal's advice."""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from conftest import WORDS, _vocab, build_tiny_model
from test_guarantees_support import featurize_args, one_line_error, run_cli

import featstore
from featstore.cli import main
from featstore.store import StoreWriter, keys_for

HIDDEN = 16
LAYERS = [0, 1, 2, 3]
CONTENT = WORDS[20:]  # words that carry meaning in the toy sentences


def toy_sentence(rng: np.random.Generator, n: int) -> str:
    return " ".join(rng.choice(CONTENT, size=n))


def paraphrase_pairs(n: int, seed: int = 0) -> pd.DataFrame:
    """Pairs (a, b, label, score, split): b reorders a's words (label 1, score high), or is
    another sentence (label 0, score low); sentences repeat across rows and columns."""
    rng = np.random.default_rng(seed)
    pool = [toy_sentence(rng, int(rng.integers(3, 7))) for _ in range(max(8, n // 3))]
    rows = []
    for i in range(n):
        a = pool[int(rng.integers(len(pool)))]
        if i % 2 == 0:
            words = a.split()
            rng.shuffle(words)
            b, label, score = " ".join(words), 1, 4.0 + rng.random()
        else:
            b, label, score = pool[int(rng.integers(len(pool)))], 0, rng.random() * 2
            if b == a:
                b = pool[(pool.index(a) + 1) % len(pool)]
        rows.append((a, b, label, round(score, 3), "test" if i % 5 == 0 else "train"))
    return pd.DataFrame(rows, columns=["a", "b", "label", "score", "split"])


def token_pair_store(root: Path, model: Path, seed: int) -> dict:
    """160 paraphrase pairs featurized with token states (float32): the store, its train and
    test rows, the corpus and the model."""
    corpus = root / "para.csv"
    paraphrase_pairs(160, seed=seed).to_csv(corpus, index=False)
    assert main(featurize_args(corpus, root / "store", model, "--pair-cols", "a", "b",
                               "--tokens", "--compute-dtype", "float32")) == 0
    store = featstore.open(root / "store")
    df = store.dataset("para")
    return {"root": root, "model": model, "corpus": corpus, "store": store,
            "train": df[df.split == "train"].reset_index(drop=True),
            "test": df[df.split == "test"].reset_index(drop=True)}


def follow_token_advice(capsys, pairs: dict, store: Path, fit: tuple, names: str) -> None:
    """On a store of `pairs`' corpus without token states, the fit `fit` is refused in one
    line naming `names` and --tokens; the featurize run it advises, run as written, makes the
    same fit work."""
    assert main(featurize_args(pairs["corpus"], store, pairs["model"],
                               "--pair-cols", "a", "b", "--compute-dtype", "float32")) == 0
    code, out, err = run_cli(capsys, *fit)
    assert code == 2
    line = one_line_error(err)
    assert "--tokens" in line and names in line
    words = shlex.split(line.split("`")[1])
    assert words[0] == "featurize"
    words[words.index("CORPUS")] = str(pairs["corpus"])
    assert main(words + ["--compute-dtype", "float32"]) == 0
    code, out, err = run_cli(capsys, *fit)
    assert code == 0, err


def pair_key_of(a: str, b: str) -> str:
    ka, kb = keys_for([a, b])
    return hashlib.blake2b((ka + kb).encode(), digest_size=16).hexdigest()


def planted_pair_store(root: Path, n_texts: int = 120, n_pairs: int = 400, seed: int = 0,
                       name: str = "pairs", cross: bool = False) -> Path:
    """A store whose texts' vectors are noisy copies of a latent topic vector per text (layer 2
    mean and max carry it); pairs are labelled by whether their topics agree (`label`), scored
    by the topics' cosine (`score`), three classes by that cosine (`grade`). With `cross`, a
    joint encoding of each pair whose layer 3 mean carries the label."""
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(8, HIDDEN))
    of_text = rng.integers(0, 8, size=n_texts)
    latent = topics[of_text] + 0.3 * rng.normal(size=(n_texts, HIDDEN))
    texts = [f"toy text {i}" for i in range(n_texts)]
    feats = {}
    for f in ("cls", "mean", "max"):
        arr = rng.normal(size=(n_texts, len(LAYERS), HIDDEN)) * 0.5
        if f != "cls":
            arr[:, 2] += latent
        feats[f] = arr.astype(np.float16)
    ia = rng.integers(0, n_texts, size=n_pairs)
    ib = np.where(rng.random(n_pairs) < 0.5,
                  [int(rng.choice(np.flatnonzero(of_text == of_text[i]))) for i in ia],
                  rng.integers(0, n_texts, size=n_pairs))
    u, v = latent[ia], latent[ib]
    score = (u * v).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
    keys = keys_for(texts)
    ka, kb = [keys[i] for i in ia], [keys[i] for i in ib]
    pk = [hashlib.blake2b((x + y).encode(), digest_size=16).hexdigest()
          for x, y in zip(ka, kb, strict=True)]
    fp = {"kind": "encoder", "model": "toy-pairs", "layers": LAYERS, "hidden": HIDDEN}
    table = pa.table({
        "_key": pk, "_key_a": ka, "_key_b": kb, "a": [texts[i] for i in ia],
        "b": [texts[i] for i in ib], "label": (of_text[ia] == of_text[ib]).astype(int).tolist(),
        "score": score.round(4).tolist(),
        "grade": np.digitize(score, [-0.2, 0.5]).tolist(),
        "split": ["test" if i % 4 == 0 else "train" for i in range(n_pairs)]})
    with StoreWriter(root) as w:
        w.ensure_encoder("enc-toy", fp, "float16", {k: [len(LAYERS), HIDDEN] for k in feats})
        w.commit_shard("enc-toy", w.write_shard_file("enc-toy", keys, feats))
        encoders = ["enc-toy"]
        if cross:
            same = (of_text[ia] == of_text[ib]).astype(float)
            joint = {f: (rng.normal(size=(n_pairs, len(LAYERS), HIDDEN)) * 0.5).astype(np.float32)
                     for f in ("cls", "mean", "max")}
            joint["mean"][:, 3, :4] += 2.0 * same[:, None]
            cfp = {"kind": "cross", "cross_version": 1, "encoder": fp, "layers": LAYERS,
                   "hidden": HIDDEN, "logits": 0}
            unique = dict(zip(pk, range(n_pairs), strict=True))  # a repeated pair once
            rows = list(unique.values())
            w.ensure_encoder("cross-toy", cfp, "float16", {k: [len(LAYERS), HIDDEN]
                                                           for k in joint})
            w.commit_shard("cross-toy", w.write_shard_file(
                "cross-toy", list(unique), {k: v[rows].astype(np.float16)
                                            for k, v in joint.items()}))
            encoders.append("cross-toy")
        w.commit_dataset(name, table, text_column="a", source="synthetic", encoders=encoders,
                         skipped=0, pair_columns=["a", "b"])
    return root


def build_cross_encoder(directory: Path, num_labels: int = 3, seed: int = 0) -> Path:
    """A tiny BERT sequence classifier (what a real cross-encoder from the hub is), saved with
    the tiny models' tokenizer."""
    from transformers import BertConfig, BertForSequenceClassification

    build_tiny_model("bert", directory, seed)  # the tokenizer and a config to start from
    config = BertConfig.from_pretrained(directory, num_labels=num_labels)
    config.architectures = ["BertForSequenceClassification"]
    torch.manual_seed(seed + 1)
    BertForSequenceClassification(config).eval().save_pretrained(directory)
    return directory


def build_pairless_model(directory: Path) -> Path:
    """A tiny BERT whose tokenizer joins two texts with nothing between them (as a decoder's
    does): it cannot encode pairs jointly."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    build_tiny_model("bert", directory)
    for f in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json",
              "tokenizer.json"):
        (directory / f).unlink(missing_ok=True)
    vocab = {w: i for i, w in enumerate(_vocab())}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]",
                            model_max_length=64).save_pretrained(directory)
    return directory
