"""How featurize and the head-side reads scale with corpus size.

Part 1, featurize: for each size in --sizes (default 1k, 10k, 100k synthetic texts, see
synthetic.py) one fresh process featurizes a fresh store (LASER off) and reports the pass time
(open store -> dataset commit; model loading left out), the store's bytes on disk, the cost per
text, the time of a second pass that finds everything stored (what an incremental re-run costs),
and the process's peak RSS. The default encoder is a random 2-layer, 32-wide BERT, so 100k texts
finish in minutes on two cores and the figures show the pass's own overheads (tokenizing,
batching, hashing, writing) rather than the model; --model default uses the bundled MiniLM.
Linear growth shows as a flat per-text cost. --engines local,ray featurizes each size with both
engines side by side (the Ray job runs on a local cluster of this machine's cores, started before
the timed pass; its actors' start-up is part of the pass, as it is for a real job).

Part 2, reading features for a head: a store with --head-rows rows (default 1M) of one stored
layer of --hidden (default 384, MiniLM's width) float16 `mean` and `max` vectors, written as
shards of 16384 rows. Each measurement runs in a fresh process and reports its peak RSS
(VmHWM) above a baseline process that only opens the store, next to the float16 bytes of the
vectors it reads:
  index         Store.index: the key -> (shard, row) map every read starts with
  gather        Store.gather of all `mean` rows at once (float16)
  chunked       all `mean` rows read in chunks of --chunk keys, reduced on the way
  fit-head      what `fit-head --pool mean --head linear --epochs 1` runs: HeadClassifier.fit on
                the whole dataset (10% held out for validation)
  fit-head-mm   the same with --pool mean-max --head mlp (two features, 768 wide)

Timings are noisy on a shared CPU; compare sizes within one run.

  python bench/scaling.py [--sizes 1000,10000,100000] [--model tiny|default] [--engines local,ray]
                          [--head-rows 1000000] [--hidden 384] [--skip-heads] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from
    the parent, which would charge every child with the driver's own memory."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _child(argv: list[str]) -> dict:
    """Run this script's child mode in a fresh process; its last stdout line is JSON."""
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", *argv],
                         capture_output=True, text=True, env={**os.environ,
                                                              "TOKENIZERS_PARALLELISM": "false"})
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": tail}
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- child modes ----------------------------------------------------------------------------------
def child_featurize(corpus: str, store: str, model: str | None, engine: str) -> dict:
    from featstore.featurize.driver import featurize_corpus
    from featstore.featurize.options import FeaturizeOptions

    opts = FeaturizeOptions(model=model, laser=False, engine=engine)
    if engine == "ray":  # a cluster is up before a job starts; its actors are part of the job
        import logging

        import ray

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False,
                 logging_level=logging.WARNING, log_to_driver=False)
    # Warm-up on a few texts into a throwaway store: first-call costs are not per-text costs.
    warm = Path(store).with_name(Path(store).name + "-warm")
    from synthetic import write_corpus

    featurize_corpus(write_corpus(warm.with_suffix(".csv"), 32, seed=12345), warm, opts,
                     progress=False)
    first = featurize_corpus(corpus, store, opts, progress=False).to_dict()
    again = featurize_corpus(corpus, store, opts, progress=False).to_dict()
    return {"pass_seconds": first["pass_seconds"], "new": first["new"],
            "windows": first["windows"], "bytes_written": first["bytes_written"],
            "store_bytes": _dir_bytes(Path(store)), "rerun_seconds": again["pass_seconds"],
            "rerun_new": again["new"], "peak_rss_mb": round(_peak_rss_mb(), 1)}


def child_heads(store_path: str, mode: str, chunk: int) -> dict:
    import numpy as np

    from featstore.store import KEY_COLUMN, Store

    store = Store(store_path)
    enc = store.resolve_encoder()
    t0 = time.perf_counter()
    out: dict = {}
    if mode == "baseline":
        pass
    elif mode == "index":
        out["keys"] = len(store.index(enc, "mean"))
    else:
        keys = store.dataset("big")[KEY_COLUMN].tolist()
        if mode == "gather":
            x = store.gather(enc, keys, "mean", -1)
            out["array_mb"] = round(x.nbytes / 2**20, 1)
        elif mode == "chunked":
            total = None
            for s in range(0, len(keys), chunk):
                block = store.gather(enc, keys[s:s + chunk], "mean", -1).astype(np.float32)
                part = block.sum(axis=0)
                total = part if total is None else total + part
            out["checksum"] = float(total.sum()) if total is not None else 0.0
        elif mode in ("fit-head", "fit-head-mm"):
            from featstore.heads.estimator import make_head

            pool, kind = ("mean", "linear") if mode == "fit-head" else ("mean-max", "mlp")
            head = make_head("classification", pool=pool, head=kind, layers=[-1],
                             epochs=1, patience=1, label_col="label")
            head.fit(store, "big")
            out["fit_info"] = {k: v for k, v in getattr(head, "fit_info_", {}).items()
                               if isinstance(v, (int, float, str))}
        else:
            raise SystemExit(f"unknown mode {mode}")
    out["seconds"] = round(time.perf_counter() - t0, 2)
    out["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return out


# -- building the 1M-row store --------------------------------------------------------------------
def build_head_store(root: Path, rows: int, hidden: int, shard_rows: int = 16384) -> None:
    """`rows` keys with float16 `mean` and `max` vectors of one layer, and a labelled dataset
    `big`."""
    import numpy as np
    import pandas as pd

    from featstore.store import KEY_COLUMN, StoreWriter, text_key

    rng = np.random.default_rng(0)
    keys = [text_key(f"synthetic text {i}") for i in range(rows)]
    labels = rng.integers(0, 10, size=rows)
    centers = rng.normal(size=(10, hidden)).astype(np.float32)
    with StoreWriter(root) as w:
        enc = "synthetic-encoder"
        w.ensure_encoder(enc, {"kind": "encoder", "model": "synthetic", "layers": [6],
                               "hidden": hidden}, "float16",
                         {"mean": [1, hidden], "max": [1, hidden]})
        for s in range(0, rows, shard_rows):
            n = min(shard_rows, rows - s)
            x = centers[labels[s:s + n]] + rng.normal(size=(n, hidden)).astype(np.float32)
            top = x + np.abs(rng.normal(size=(n, hidden))).astype(np.float32)
            entry = w.write_shard_file(enc, keys[s:s + n],
                                       {"mean": x.astype(np.float16)[:, None, :],
                                        "max": top.astype(np.float16)[:, None, :]})
            w.commit_shard(enc, entry)
        table = pd.DataFrame({KEY_COLUMN: keys, "label": [f"c{v}" for v in labels]})
        import pyarrow as pa

        w.commit_dataset("big", pa.Table.from_pandas(table, preserve_index=False),
                         text_column="text", source="synthetic", encoders=[enc], skipped=0)


# -- driver ---------------------------------------------------------------------------------------
def run_featurize(sizes: list[int], model_arg: str, engines: list[str], tmp: Path
                  ) -> list[dict]:
    from synthetic import build_random_encoder, write_corpus

    model = None if model_arg == "default" else str(build_random_encoder("tiny-bert",
                                                                         tmp / "tiny-bert"))
    rows = []
    for n in sizes:
        corpus = write_corpus(tmp / f"corpus-{n}.csv", n, seed=n)
        for engine in engines:
            print(f"featurize {n} texts ({engine}) ...", file=sys.stderr, flush=True)
            r = _child(["featurize", str(corpus), str(tmp / f"store-{n}-{engine}"), model or "",
                        engine])
            r.update(texts=n, engine=engine)
            if "error" not in r:
                r["ms_per_text"] = round(1000 * r["pass_seconds"] / n, 3)
                r["store_bytes_per_text"] = round(r["store_bytes"] / n)
            rows.append(r)
    return rows


def run_heads(rows: int, hidden: int, chunk: int, tmp: Path) -> dict:
    root = tmp / "heads-store"
    print(f"writing a {rows}-row store ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    build_head_store(root, rows, hidden)
    result = {"rows": rows, "hidden": hidden, "chunk": chunk,
              "build_seconds": round(time.perf_counter() - t0, 1),
              "store_mb": round(_dir_bytes(root) / 2**20, 1),
              "float16_mb": round(rows * hidden * 2 / 2**20, 1), "modes": {}}
    for mode in ("baseline", "index", "gather", "chunked", "fit-head", "fit-head-mm"):
        print(f"  {mode} ...", file=sys.stderr, flush=True)
        result["modes"][mode] = _child(["heads", str(root), mode, str(chunk)])
        vectors = {"baseline": 0, "index": 0, "fit-head-mm": 2}.get(mode, 1)
        result["modes"][mode]["vectors_mb"] = round(vectors * result["float16_mb"], 1)
    return result


def _print(report: dict) -> None:
    if report.get("featurize"):
        print(f"featurize ({report['model']} encoder; pass time excludes model loading)")
        print(f"{'texts':>8} {'engine':>6} {'pass s':>8} {'ms/text':>8} {'store MB':>9} "
              f"{'B/text':>7} {'rerun s':>8} {'peak RSS MB':>12}")
        for r in report["featurize"]:
            if "error" in r:
                print(f"{r['texts']:>8} {r['engine']:>6} error: {r['error']}")
                continue
            print(f"{r['texts']:>8} {r['engine']:>6} {r['pass_seconds']:>8.2f} "
                  f"{r['ms_per_text']:>8.3f} "
                  f"{r['store_bytes'] / 2**20:>9.2f} {r['store_bytes_per_text']:>7} "
                  f"{r['rerun_seconds']:>8.2f} {r['peak_rss_mb']:>12.0f}")
        for engine in dict.fromkeys(r["engine"] for r in report["featurize"]):
            ok = [r for r in report["featurize"] if "error" not in r and r["engine"] == engine]
            if len(ok) >= 2:
                a, b = ok[0], ok[-1]
                print(f"{engine}: per-text cost at {b['texts']} / at {a['texts']}: "
                      f"{b['ms_per_text'] / a['ms_per_text']:.2f} (1.00 = linear growth)")
    h = report.get("heads")
    if h:
        print(f"\nreading {h['rows']} rows x {h['hidden']} float16 ({h['float16_mb']} MB per "
              f"feature, mean and max stored; store {h['store_mb']} MB on disk, built in "
              f"{h['build_seconds']} s)")
        base = h["modes"]["baseline"].get("peak_rss_mb", 0.0)
        print(f"{'mode':<12} {'seconds':>8} {'peak RSS MB':>12} {'above baseline':>15} "
              f"{'float16 read MB':>16}")
        for mode, r in h["modes"].items():
            if "error" in r:
                print(f"{mode:<12} could not run: {r['error']}")
                continue
            print(f"{mode:<12} {r['seconds']:>8.2f} {r['peak_rss_mb']:>12.0f} "
                  f"{r['peak_rss_mb'] - base:>15.0f} {r['vectors_mb']:>16.0f}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        kind, *rest = argv[1:]
        if kind == "featurize":
            corpus, store, model, engine = rest
            result = child_featurize(corpus, store, model or None, engine)
        else:
            store, mode, chunk = rest
            result = child_heads(store, mode, int(chunk))
        print(json.dumps(result))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1000,10000,100000", help="comma list of corpus sizes")
    p.add_argument("--model", default="tiny", choices=["tiny", "default"])
    p.add_argument("--engines", default="local",
                   help="comma list of local,ray: each size featurized by each, side by side")
    p.add_argument("--head-rows", type=int, default=1_000_000)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--chunk", type=int, default=65536, help="keys per chunk in `chunked`")
    p.add_argument("--skip-heads", action="store_true")
    p.add_argument("--skip-featurize", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    except ValueError:
        p.error(f"--sizes must be integers like 1000,10000, not {args.sizes!r}")
    if any(n <= 0 for n in sizes):
        p.error("--sizes must be positive")
    report: dict = {"model": args.model}
    with tempfile.TemporaryDirectory(prefix="featstore-scaling-") as tmpdir:
        tmp = Path(tmpdir)
        if not args.skip_featurize:
            engines = [e.strip() for e in args.engines.split(",") if e.strip()]
            if not engines or set(engines) - {"local", "ray"}:
                p.error(f"--engines must list local and/or ray, not {args.engines!r}")
            report["featurize"] = run_featurize(sizes, args.model, engines, tmp)
        if not args.skip_heads:
            report["heads"] = run_heads(args.head_rows, args.hidden, args.chunk, tmp)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        _print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
