"""Which approximate-index library featstore uses, by measurement: FAISS (HNSW and IVF-Flat),
hnswlib and usearch on the same synthetic vectors as bench/neighbors.py (100k x 384 by
default), 1,000 new queries: build seconds, seconds per 1,000 queries at several search
breadths, recall@10 against exact search, bytes serialized.

  pip install hnswlib usearch    # not featstore dependencies; faiss-cpu is
  python bench/index_libraries.py [--n 100000] [--libs faiss-hnsw faiss-ivf hnswlib usearch]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from neighbors import recall, synthetic  # noqa: E402

from featstore.search.exact import exact_search  # noqa: E402

BREADTHS = (16, 32, 64, 128, 256)


def run(lib: str, corpus: np.ndarray, queries: np.ndarray, truth: np.ndarray, exact_s: float
        ) -> None:
    n, d = corpus.shape
    t = time.perf_counter()
    if lib == "faiss-hnsw":
        import faiss

        index = faiss.IndexHNSWFlat(d, 16, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 64
        index.add(corpus)

        def search(b: int) -> np.ndarray:
            index.hnsw.efSearch = max(b, 10)
            return index.search(queries, 10)[1]
        size = faiss.serialize_index(index).nbytes
    elif lib == "faiss-ivf":
        import faiss

        lists = int(4 * np.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, lists, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(n, min(n, 40 * lists), replace=False)
        index.train(corpus[sample])
        index.add(corpus)

        def search(b: int) -> np.ndarray:
            index.nprobe = b
            return index.search(queries, 10)[1]
        size = faiss.serialize_index(index).nbytes
    elif lib == "hnswlib":
        import hnswlib

        index = hnswlib.Index("ip", d)
        index.init_index(n, M=16, ef_construction=64)
        index.add_items(corpus, np.arange(n))

        def search(b: int) -> np.ndarray:
            index.set_ef(max(b, 10))
            return index.knn_query(queries, 10)[0]
        size = 0  # hnswlib saves only to a file path
    else:
        from usearch.index import Index

        index = Index(ndim=d, metric="ip", dtype="f32", connectivity=16, expansion_add=64)
        index.add(np.arange(n), corpus)

        def search(b: int) -> np.ndarray:
            index.expansion_search = b
            return index.search(queries, 10).keys
        size = len(index.save())
    build = time.perf_counter() - t
    for b in BREADTHS:
        t = time.perf_counter()
        found = search(b)
        q = time.perf_counter() - t
        print(f"| {lib} | {build:.0f} s | {b} | {q:.3f} | {exact_s / q:.1f}x | "
              f"{recall(np.asarray(found), truth):.3f} | {size / 1e6:.0f} MB |", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--libs", nargs="+", default=["faiss-hnsw", "faiss-ivf", "hnswlib",
                                                   "usearch"])
    args = ap.parse_args()
    corpus, queries = synthetic(args.n, seed=0), synthetic(1000, seed=1)
    t = time.perf_counter()
    _, truth = exact_search(queries, corpus, 10)
    exact_s = time.perf_counter() - t
    print(f"exact search: {exact_s:.3f} s per 1,000 queries over {args.n:,} rows\n")
    print("| library | build | breadth (efSearch / nprobe) | s per 1,000 queries | speed vs "
          "exact | recall@10 | serialized |\n|---|---|---|---|---|---|---|")
    for lib in args.libs:
        run(lib, corpus, queries, truth, exact_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
