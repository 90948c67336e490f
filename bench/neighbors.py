"""Nearest neighbours and the audit, side by side in one run (a benchmark, not a timed test).

  synthetic    100k and 1M vectors of width 384 (clustered, with a decaying spectrum and a
               common direction, so their neighbour structure resembles sentence vectors: on
               Banking77 a test text's nearest training text has median cosine 0.92 and a
               random pair 0.22; here 0.93 and 0.22), 1,000 new queries from the same
               distribution: exact search (featstore.search.exact), the FAISS HNSW index
               (build, search breadth tuned to recall@10 >= 0.97 on held-out rows) and
               sentence-transformers' util.semantic_search: seconds per 1,000 queries,
               recall@10 against exact, build time, the extra peak memory of each step.
  banking77    the same on the stored Banking77 vectors (mean of the top layer): 9,999
               distinct training texts searched by the 3,080 test texts.
  label errors Banking77 train with 5% of labels flipped at random (seeded): audit's
               held-out probabilities (the head its folds choose) and its rule, against
               cleanlab's find_label_issues (default rule) on the same probabilities:
               precision, recall and F1 of the flagged rows against the flipped ones.
  threshold    what the near-duplicate threshold means on Banking77: the cosine of a text and
               a trivially edited copy (case and punctuation, one typo, a word added or
               dropped), and how many training texts have another training text above each
               threshold (with how often the two share a label).
  leakage      Banking77 test texts with a near-twin in train at the audit's threshold, with
               examples.

  python bench/neighbors.py [--store DIR] [--data ../shared/data] [--sizes 100000 1000000]
      [--skip synthetic banking77 labels threshold leakage] [--flip-seed 0]

--store: a store holding Banking77 as datasets train and test (made there when missing).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import threading
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
K = 10
WIDTH = 384


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Peak:
    """The highest resident memory (MB) above the level at entry while the block runs."""

    def __enter__(self) -> Peak:
        self.base = self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        self.t0 = time.perf_counter()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())

    @property
    def extra(self) -> float:
        return self.peak - self.base


def synthetic(n: int, seed: int, comps: int = 10000, tau: float = 0.5) -> np.ndarray:
    """Unit rows: cluster centres with a power-law spectrum in a random basis, plus a common
    direction; the structure (centres, basis) is shared by every call, the draws are not."""
    g = np.random.default_rng(1234)
    s = (np.arange(1, WIDTH + 1) ** -0.8).astype(np.float32)
    s /= np.linalg.norm(s)
    basis = np.linalg.qr(g.standard_normal((WIDTH, WIDTH)))[0].astype(np.float32)
    mu = g.standard_normal(WIDTH).astype(np.float32)
    mu *= 0.55 / np.linalg.norm(mu)
    centres = g.standard_normal((comps, WIDTH)).astype(np.float32) * s
    rng = np.random.default_rng(seed)
    out = np.empty((n, WIDTH), np.float32)
    for a in range(0, n, 100_000):
        b = min(n, a + 100_000)
        x = centres[rng.integers(0, comps, b - a)]
        x += tau * rng.standard_normal((b - a, WIDTH)).astype(np.float32) * s
        x = x @ basis + mu
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[a:b] = x
    return out


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / truth.shape[1]
                          for f, t in zip(found, truth, strict=True)]))


def compare_search(name: str, corpus: np.ndarray, queries: np.ndarray) -> list[str]:
    """exact vs semantic_search vs the index on one corpus; one table row each."""
    import torch
    from sentence_transformers import util

    from featstore.search.approximate import HnswIndex, M
    from featstore.search.exact import exact_search

    per = 1000 / len(queries)
    rows = []
    with Peak() as p:
        _, truth = exact_search(queries, corpus, K)
    exact_s = p.seconds * per
    rows.append(f"| {name} | exact (featstore) | - | {exact_s:.3f} | 1.000 | 1.0x | "
                f"{p.extra:.0f} MB |")
    log(rows[-1])
    q, c = torch.from_numpy(queries), torch.from_numpy(corpus)
    with Peak() as p:
        hits = util.semantic_search(q, c, top_k=K)
    st = np.array([[h["corpus_id"] for h in row] for row in hits])
    rows.append(f"| {name} | sentence-transformers semantic_search | - | {p.seconds * per:.3f} "
                f"| {recall(st, truth):.3f} | {exact_s / (p.seconds * per):.1f}x | "
                f"{p.extra:.0f} MB |")
    log(rows[-1])
    with Peak() as build:
        index, order = HnswIndex.build(corpus)
    with Peak() as p:
        _, found = index.search(queries, K)
    found = order[found]
    idx_s = p.seconds * per
    rows.append(f"| {name} | FAISS HNSW index (M {M}, efSearch {index.ef_search} tuned: "
                f"held-out recall {index.recall:.3f}) | {build.seconds:.0f} s, "
                f"+{build.extra:.0f} MB, "
                f"{index.to_bytes().nbytes / 1e6:.0f} MB stored | {idx_s:.3f} | "
                f"{recall(found, truth):.3f} | {exact_s / idx_s:.1f}x | {p.extra:.0f} MB |")
    log(rows[-1])
    return rows


def ensure_store(store: Path, data: Path) -> None:
    import featstore

    if (store / "manifest.json").exists():
        names = {d["name"] for d in featstore.open(store).datasets()}
        if {"train", "test"} <= names:
            return
    from featstore.cli import main

    for split in ("train", "test"):
        log(f"featurizing Banking77 {split} into {store}")
        assert main(["featurize", str(data / "banking77" / f"{split}.csv"), "--store",
                     str(store), "--name", split, "--no-progress"]) == 0


def banking77_search(store_path: Path) -> list[str]:
    import featstore
    from featstore.search.layouts import SearchLayout
    from featstore.search.neighbors import SearchCorpus

    store = featstore.open(store_path)
    layout = SearchLayout.resolve(store, "mean")
    corpus = layout.vectors(store, SearchCorpus.of(store, "train").keys)
    queries = layout.vectors(store, store.dataset("test")["_key"].tolist())
    return compare_search(f"Banking77 ({len(corpus)} x {corpus.shape[1]}, 3,080 queries)",
                          corpus, queries)


def label_errors(store_path: Path, flip_seed: int) -> list[str]:
    import warnings

    from cleanlab.filter import find_label_issues as cleanlab_find

    import featstore
    from featstore.heads.protocols import EvaluationPlan
    from featstore.heads.units import TEXT
    from featstore.reports.label_issues import find_label_issues
    from featstore.services.audit import out_of_fold

    store = featstore.open(store_path)
    train = store.dataset("train")
    rng = np.random.default_rng(flip_seed)
    classes = sorted(train["category"].unique())
    flipped = rng.choice(len(train), int(0.05 * len(train)), replace=False)
    noisy = train["category"].to_numpy().copy()
    for i in flipped:
        noisy[i] = rng.choice([c for c in classes if c != noisy[i]])
    rows = train.assign(category=noisy)
    plan = EvaluationPlan(rows, "train", "category", cv=5, unit=TEXT)
    t0 = time.perf_counter()
    oof = out_of_fold(store, plan, folds=5, seed=0, progress=True)
    seconds = time.perf_counter() - t0
    truth = set(flipped.tolist())

    def scores(flagged: set[int]) -> str:
        tp = len(flagged & truth)
        p, r = tp / max(1, len(flagged)), tp / len(truth)
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        return f"{len(flagged)} | {p:.3f} | {r:.3f} | **{f1:.3f}**"

    ours = set(find_label_issues(oof.codes, oof.probs).rows.tolist())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probs = oof.probs / oof.probs.sum(axis=1, keepdims=True)
        theirs = set(np.nonzero(cleanlab_find(oof.codes, probs, n_jobs=1))[0].tolist())
    tried = ", ".join(f"{t['head']} {100 * t['accuracy']:.2f}" for t in oof.tried)
    return [f"held-out probabilities: 5-fold CV, {seconds:.0f} s for {len(oof.tried)} candidates "
            f"(held-out accuracy against the noisy labels: {tried}); chosen: {oof.head}",
            f"flipped: {len(truth)} of {len(train)} training labels (seed {flip_seed})",
            "| rule | flagged | precision | recall | F1 |", "|---|---|---|---|---|",
            f"| audit (cleanlab C_both) | {scores(ours)} |",
            f"| cleanlab find_label_issues (default, prune_by_noise_rate) | {scores(theirs)} |"]


def _typo(text: str, rng: random.Random) -> str:
    words = text.split()
    long = [i for i, w in enumerate(words) if len(w) > 3]
    if not long:
        return text + "."
    i = rng.choice(long)
    w = words[i]
    j = rng.randrange(len(w) - 1)
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    return " ".join(words)


EDITS = {
    "case and punctuation": lambda t, r: re.sub(r"[^\w\s']", "", t).lower(),
    "one typo": _typo,
    "word added": lambda t, r: ("please " + t) if r.random() < 0.5 else (t.rstrip(".?! ")
                                                                          + " please"),
    "word dropped": lambda t, r: " ".join(w for k, w in enumerate(t.split())
                                          if k != r.randrange(max(1, len(t.split()))))
                                 or t,
}


def threshold_study(store_path: Path, sample: int = 600) -> list[str]:
    import featstore
    from featstore.search.exact import exact_search
    from featstore.search.layouts import SearchLayout
    from featstore.search.neighbors import SearchCorpus
    from featstore.store import keys_for

    store = featstore.open(store_path)
    corpus = SearchCorpus.of(store, "train")
    layout = SearchLayout.resolve(store, "mean")
    rng = random.Random(0)
    picks = rng.sample(range(len(corpus.keys)), sample)
    texts = corpus.table["text"].to_numpy()[corpus.first_row[picks]].tolist()
    lines = ["| edit | median cosine | 5% quantile | share >= 0.95 | >= 0.98 |",
             "|---|---|---|---|---|"]
    everything = []
    for name, edit in EDITS.items():
        edited = [edit(t, rng) for t in texts]
        store.featurize_missing(edited)
        a = layout.vectors(store, keys_for(texts))
        b = layout.vectors(store, keys_for(edited))
        cos = np.sum(a * b, axis=1)
        changed = np.array([x != y for x, y in zip(texts, edited, strict=True)])
        cos = cos[changed]
        everything.append(cos)
        lines.append(f"| {name} | {np.median(cos):.3f} | {np.quantile(cos, 0.05):.3f} | "
                     f"{np.mean(cos >= 0.95):.3f} | {np.mean(cos >= 0.98):.3f} |")
    cos = np.concatenate(everything)
    lines.append(f"| all edits ({len(cos)} pairs) | {np.median(cos):.3f} | "
                 f"{np.quantile(cos, 0.05):.3f} | {np.mean(cos >= 0.95):.3f} | "
                 f"{np.mean(cos >= 0.98):.3f} |")
    vec = layout.vectors(store, corpus.keys)
    s, i = exact_search(vec, vec, 1, exclude=np.arange(len(vec)))
    all_texts = corpus.table["text"].to_numpy()[corpus.first_row]
    alike = np.array([_alike(all_texts[a], all_texts[b]) for a, b in enumerate(i[:, 0])])
    labels = corpus.table["category"].to_numpy()[corpus.first_row]
    same = labels == labels[i[:, 0]]
    lines += ["", f"nearest-neighbour pairs of training texts; 'near-duplicate' = the two texts "
                  f"are >= 90% alike as strings (difflib ratio) without case and punctuation: "
                  f"{int(alike.sum())} of {len(alike)} pairs",
              "| threshold | texts with another at or above it | of those, same label | "
              "precision | recall | F1 |", "|---|---|---|---|---|---|"]
    for t in (0.90, 0.95, 0.97, 0.98, 0.985, 0.99):
        hit = s[:, 0] >= t
        p, r = float(alike[hit].mean()), float(hit[alike].mean())
        lines.append(f"| {t:g} | {int(hit.sum())} ({100 * hit.mean():.2f}%) | "
                     f"{100 * same[hit].mean():.1f}% | {p:.3f} | {r:.3f} | "
                     f"{2 * p * r / (p + r):.3f} |")
    for lo, hi in ((0.95, 0.97), (0.98, 0.99)):
        lines.append(f"  pairs at {lo:g}-{hi:g} that are not alike as strings:")
        band = np.nonzero((s[:, 0] >= lo) & (s[:, 0] < hi) & ~alike)[0][:3]
        for j in band:
            lines.append(f"  {s[j, 0]:.3f}  {all_texts[j]!r} ~ {all_texts[i[j, 0]]!r}")
    return lines


def _alike(a: str, b: str) -> bool:
    import difflib

    def norm(t: str) -> str:
        return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", "", t.lower())).strip()

    return difflib.SequenceMatcher(None, norm(a), norm(b)).ratio() >= 0.9


def leakage(store_path: Path, threshold: float) -> list[str]:
    import featstore
    from featstore.search.exact import exact_search
    from featstore.search.layouts import SearchLayout
    from featstore.search.neighbors import SearchCorpus

    store = featstore.open(store_path)
    corpus = SearchCorpus.of(store, "train")
    layout = SearchLayout.resolve(store, "mean")
    train = layout.vectors(store, corpus.keys)
    test = store.dataset("test")
    s, i = exact_search(layout.vectors(store, test["_key"].tolist()), train, 1)
    hit = s[:, 0] >= threshold
    identical = np.array([k in corpus.position for k in test["_key"]])
    texts = corpus.table["text"].to_numpy()[corpus.first_row]
    lines = [f"{int(hit.sum())} of {len(test)} test texts ({100 * hit.mean():.1f}%) have a "
             f"training text at cosine >= {threshold:g}; {int(identical.sum())} are the very "
             "same text (same key)"]
    order = np.argsort(-s[:, 0])
    shown = 0
    for j in order:
        if not hit[j] or identical[j]:
            continue
        lines.append(f"  {s[j, 0]:.3f}  test {test['text'].iloc[j]!r} ({test['category'].iloc[j]})"
                     f" ~ train {texts[i[j, 0]]!r}")
        shown += 1
        if shown == 6:
            break
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", type=Path, default=Path("/tmp/featstore-bench-b77"))
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--skip", nargs="*", default=[])
    ap.add_argument("--flip-seed", type=int, default=0)
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import faiss
    import torch

    from featstore.services.audit import DEFAULT_THRESHOLD

    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at start; torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads), faiss {faiss.__version__}",
          flush=True)
    if "synthetic" not in args.skip or "banking77" not in args.skip:
        print("\n| corpus | method | build | s per 1,000 queries | recall@10 vs exact | "
              "speed vs exact | extra peak memory |\n|---|---|---|---|---|---|---|", flush=True)
    if "synthetic" not in args.skip:
        queries = synthetic(1000, seed=1)
        for n in args.sizes:
            corpus = synthetic(n, seed=0)
            name = f"synthetic {n:,} x {WIDTH}"
            for row in compare_search(name, corpus, queries):
                print(row, flush=True)
            del corpus
    needs_store = [s for s in ("banking77", "labels", "threshold", "leakage")
                   if s not in args.skip]
    if needs_store:
        ensure_store(args.store, args.data)
    if "banking77" not in args.skip:
        for row in banking77_search(args.store):
            print(row, flush=True)
    if "labels" not in args.skip:
        print("\nlabel errors (Banking77 train, 5% flipped)", flush=True)
        for line in label_errors(args.store, args.flip_seed):
            print(line, flush=True)
    if "threshold" not in args.skip:
        print("\nnear-duplicate threshold (Banking77 train, mean of the top layer)", flush=True)
        for line in threshold_study(args.store):
            print(line, flush=True)
    if "leakage" not in args.skip:
        print(f"\nleakage at the audit's threshold {DEFAULT_THRESHOLD:g}", flush=True)
        for line in leakage(args.store, DEFAULT_THRESHOLD):
            print(line, flush=True)
    print(f"\nload average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
