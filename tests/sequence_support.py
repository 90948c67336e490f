"""Synthetic stores for sequence-head tests: message vectors of a few kinds, stored as the
store holds any encoder's rows, and tables of rows grouped into labelled sequences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from test_heads_support import HIDDEN, LAYERS, build_store

from featstore.store import keys_for, open_store


def message_store(root: Path, n_messages: int = 400, n_kinds: int = 3, seed: int = 0,
                  noise: float = 0.3, columns: dict[str, list] | None = None):
    """A store of `n_messages` texts; text i is of kind i % n_kinds, its vectors that kind's
    centre plus noise in every layer; dataset `messages` holds them (with `columns`).
    Returns (store, texts, kinds)."""
    rng = np.random.default_rng(seed)
    kinds = np.arange(n_messages) % n_kinds
    centres = rng.normal(size=(n_kinds, HIDDEN)) * 2
    texts = [f"message {i}" for i in range(n_messages)]
    feats = {}
    for name in ("cls", "mean", "max"):
        arr = rng.normal(size=(n_messages, len(LAYERS), HIDDEN)) * noise
        arr += centres[kinds][:, None, :]
        feats[name] = arr.astype(np.float16)
    feats["pooler"] = (centres[kinds] + noise * rng.normal(size=(n_messages, HIDDEN))
                       ).astype(np.float16)
    build_store(root, texts, {"kind": kinds.tolist(), **(columns or {})}, feats,
                name="messages")
    return open_store(root), texts, kinds


def order_rows(texts: list[str], kinds: np.ndarray, n_seq: int, seed: int,
               lengths: tuple[int, int] = (2, 6)) -> pd.DataFrame:
    """Sequences holding one message of kind 0 and one of kind 1 among fillers (kind 2); the
    label says whether kind 0 comes first. Rows are shuffled; `turn` gives the order."""
    rng = np.random.default_rng(seed)
    pool = {k: np.flatnonzero(kinds == k) for k in np.unique(kinds)}
    rows = []
    for s in range(n_seq):
        n = int(rng.integers(lengths[0], lengths[1] + 1))
        picks = [int(rng.choice(pool[2])) for _ in range(n)]
        a, b = rng.choice(n, size=2, replace=False)
        picks[a], picks[b] = int(rng.choice(pool[0])), int(rng.choice(pool[1]))
        label = "a-first" if a < b else "b-first"
        rows += [{"seq": f"s{s}", "turn": t, "text": texts[i], "label": label}
                 for t, i in enumerate(picks)]
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return df.assign(_key=keys_for(df["text"].tolist()))


def gap_rows(texts: list[str], kinds: np.ndarray, n_seq: int, seed: int) -> pd.DataFrame:
    """Sequences of 4 random messages whose label is decided only by the gaps between their
    times: one gap of a day or more ("slow") or every gap under a minute ("fast")."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_seq):
        slow = s % 2 == 1
        gaps = rng.uniform(1, 50, size=3)
        if slow:
            gaps[rng.integers(3)] = rng.uniform(86_400, 300_000)
        times = np.concatenate([[rng.uniform(0, 1e6)], gaps]).cumsum()
        for t in range(4):
            rows.append({"seq": f"s{s}", "turn": t, "at": float(times[t]),
                         "text": texts[int(rng.integers(len(texts)))],
                         "label": "slow" if slow else "fast"})
    df = pd.DataFrame(rows)
    return df.assign(_key=keys_for(df["text"].tolist()))


def conversation_store(root: Path, n_seq: int = 30, length: int = 4):
    """Dataset `messages` of n_seq sequences (`seq`) of `length` rows each, stored in reverse
    `turn` order; `label` is constant per sequence, `mixed` varies within sequence s1."""
    n = n_seq * length
    seq = [f"s{i // length}" for i in range(n)]
    label = ["yes" if (i // length) % 2 else "no" for i in range(n)]
    mixed = [("yes" if i % 2 else "no") if i // length == 1 else lab
             for i, lab in enumerate(label)]
    cols = {"seq": seq, "turn": [length - 1 - i % length for i in range(n)], "label": label,
            "mixed": mixed}
    return message_store(root, n_messages=n, columns=cols)
