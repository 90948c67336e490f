"""Speed of heads on Banking77's cached features (2 CPU cores is the target machine):
loading 13k texts' features (< 1 s), `fit-head --head logreg` (< 10 s), `--head mlp` (< 60 s).

    .venv/bin/python bench/heads_speed.py --store /tmp/b77 --name b77
The store must already hold Banking77 (bench/banking77.py featurizes it).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from featstore.heads import protocols
from featstore.store import open_store


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="/tmp/featstore-bench")
    ap.add_argument("--name", default="banking77")
    args = ap.parse_args()
    try:
        load = f"{os.getloadavg()[0]:.1f}"
    except OSError:
        load = "?"
    print(f"cores {os.cpu_count()}, load average {load} (figures scale with other work)")
    t = time.perf_counter()
    store = open_store(args.store)
    enc = store.resolve_encoder(kind="encoder")
    keys = store.dataset(args.name)["_key"].tolist()
    x = store.gather(enc, keys, "mean", -1).astype(np.float32)
    print(f"load      {len(keys)} texts, last-layer mean {x.shape}: "
          f"{time.perf_counter() - t:.2f} s (target < 1 s)")
    t = time.perf_counter()
    x = store.gather(enc, keys, "mean", None)
    print(f"load      all {x.shape[1]} layers of mean: {time.perf_counter() - t:.2f} s")
    plan = protocols.plan_evaluation(store, args.name)
    for params, target in (({"pool": "mean", "head": "logreg"}, 10),
                           ({"pool": "mean", "head": "logreg", "C": 0.1}, 10),
                           ({"pool": "mean-max", "head": "mlp"}, 60),
                           ({"pool": "weighted", "of": "mean", "head": "mlp"}, 60)):
        r = protocols.run_protocol(store, plan, params)
        print(f"fit       {params}: {r.train_seconds:.1f} s (target < {target} s), "
              f"accuracy {100 * r.metrics['accuracy']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
