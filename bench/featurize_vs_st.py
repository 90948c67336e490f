"""Featurize vs sentence-transformers, side by side in one run: in-process and whole processes,
on Banking77 (short queries) and on a long-text corpus (SST-2 sentences joined into ~300-token
texts), plus start-up, no-op re-run, peak RSS and, optionally, the head-accuracy cost of bf16.

What is timed (each corpus):
  featurize      `featurize_corpus` into a fresh store: default encoder, all layers, cls + mean +
                 max (+ pooler), float16, LASER off, `--compute-dtype` (default auto: bfloat16 on
                 CPUs with AMX-BF16/AVX512-BF16, else float32). In-process: the summary's
                 `pass_seconds` (reading rows, hashing, tokenizing, forward, reductions, HDF5
                 writes with fsync, Parquet table) and, since the warm-up filled the fingerprint
                 cache, loading the model (about 1 s; st's in-process time leaves it out). Whole
                 process: `featstore featurize` wall time, imports and model loading included.
  no-op          the same featurize again on the same store (nothing new), as a fraction of
                 the first pass; whole process and in-process.
  st-CONFIG      `SentenceTransformer(...).encode(texts)` with its default batch size (32):
                 `default` (float32 weights), `bf16` (model_kwargs torch_dtype=bfloat16, its
                 fastest CPU setting where the CPU has bf16 units), `onnx` / `openvino`
                 (backend=..., only if installed). Last-layer mean only, nothing written.
                 In-process: encode() alone; whole process: wall time of a script that imports,
                 loads and encodes. On the long corpus max_seq_length is 512 (default 256 would
                 read half of each text); featurize reads every token (windows past 512).
  start-up       `featstore --help`, `featstore info --store S` as whole processes.
Ratios are texts/s of featurize over the fastest sentence-transformers configuration (target
>= 1.3). tokens/s counts every token of every text (no truncation). Warm-ups on 64 texts come
first in-process. The CPU may be shared: only compare figures from the same run (the load
average is printed).

  python bench/featurize_vs_st.py --data ../shared/data [--limit N] [--long-limit N]
      [--st-configs default,bf16,onnx,openvino] [--head-check] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]
ST_CONFIGS = ("default", "bf16", "onnx", "openvino")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


# -- corpora --------------------------------------------------------------------------------
def banking77(data: Path, limit: int | None) -> pd.DataFrame:
    frames = []
    for split in ("train", "test"):
        path = data / "banking77" / f"{split}.csv"
        if not path.exists():
            sys.exit(f"error: {path} not found (pass --data DIR)")
        frames.append(pd.read_csv(path).assign(split=split))
    df = pd.concat(frames, ignore_index=True).rename(columns={"category": "label"})
    return df.iloc[:limit].reset_index(drop=True) if limit else df


def long_texts(data: Path, tokenizer, target: int, limit: int | None) -> pd.DataFrame:
    """Consecutive SST-2 training sentences joined until a text holds >= `target` tokens."""
    path = data / "sst2" / "train.txt"
    if not path.exists():
        sys.exit(f"error: {path} not found (pass --data DIR)")
    texts, cur, n = [], [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        sentence = line.split(" ", 1)[1]
        cur.append(sentence)
        n += len(tokenizer(sentence, add_special_tokens=False)["input_ids"])
        if n >= target:
            texts.append(" ".join(cur))
            cur, n = [], 0
            if limit and len(texts) >= limit:
                break
    return pd.DataFrame({"text": texts})


def count_tokens(tokenizer, texts: list[str]) -> int:
    return sum(len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"])


# -- sentence-transformers --------------------------------------------------------------------
def st_kwargs(config: str) -> dict:
    import torch

    if config == "bf16":
        return {"model_kwargs": {"torch_dtype": torch.bfloat16}}
    if config in ("onnx", "openvino"):
        return {"backend": config}
    return {}


def st_model(path: str, config: str, max_seq_length: int | None):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device="cpu", **st_kwargs(config))
    if max_seq_length:
        model.max_seq_length = max_seq_length
    return model


ST_SCRIPT = """
import sys, time, resource
t0 = time.perf_counter()
import pandas as pd, torch
torch.set_num_threads({threads})
sys.path.insert(0, {bench!r})
from featurize_vs_st import st_model
texts = pd.read_csv({csv!r})["text"].astype(str).tolist()
model = st_model({path!r}, {config!r}, {msl!r})
model.encode(texts)
print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


# -- whole processes --------------------------------------------------------------------------
TIME = shutil.which("time") and Path("/usr/bin/time").exists()


def run_process(cmd: list[str], env: dict, cwd: Path) -> tuple[float, float | None, str]:
    """(wall seconds, peak RSS MB (GNU time, when installed), stdout) of one process."""
    if TIME:
        cmd = ["/usr/bin/time", "-f", "peak-rss-kb %M", *cmd]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])}... failed: {proc.stderr.strip()[-400:]}")
    rss = None
    for line in proc.stderr.splitlines():
        if line.startswith("peak-rss-kb "):
            rss = int(line.split()[1]) / 1024.0
    return wall, rss, proc.stdout


def featstore_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "featstore", *args]


# -- one corpus -------------------------------------------------------------------------------
def bench_corpus(name: str, df: pd.DataFrame, args: argparse.Namespace, tmp: Path,
                 model_path: str, tokenizer, env: dict, max_seq_length: int | None) -> dict:
    from featstore.featurize.driver import featurize_corpus
    from featstore.featurize.options import FeaturizeOptions

    texts = df["text"].astype(str).tolist()
    n, tokens = len(texts), count_tokens(tokenizer, texts)
    corpus = tmp / f"{name}.csv"
    df.to_csv(corpus, index=False)
    warm = tmp / f"{name}-warm.csv"
    df.iloc[:64].to_csv(warm, index=False)
    options = FeaturizeOptions(device="cpu", laser=False, compute_dtype=args.compute_dtype,
                               dtype="float16")
    res: dict = {"corpus": name, "texts": n, "tokens": tokens,
                 "tokens_per_text": round(tokens / n, 1), "st_max_seq_length": max_seq_length}

    def featurize(store: Path, path: Path = corpus) -> dict:
        return featurize_corpus(path, store, options, name=name, progress=False,
                                warn=lambda msg: None).to_dict()

    if "inprocess" in args.modes:
        log(f"[{name}] in-process featurize ({n} texts, {tokens} tokens)")
        featurize(tmp / f"{name}-warm-store", warm)
        first = featurize(tmp / f"{name}-store-inproc")
        again = featurize(tmp / f"{name}-store-inproc")
        res["inproc"] = {"featurize": first["pass_seconds"], "noop": again["pass_seconds"],
                         "noop_new": again["new"], "encode": first["encode_seconds"],
                         "bytes": first["bytes_written"], "layers": first["layers"],
                         "features": first["features"]}
        for config in args.st_configs:
            try:
                model = st_model(model_path, config, max_seq_length)
            except Exception as exc:  # a backend that is not installed: say so and go on
                res["inproc"][f"st-{config}"] = None
                res.setdefault("skipped", {})[config] = f"{type(exc).__name__}: {exc}"[:160]
                continue
            log(f"[{name}] in-process st-{config}")
            model.encode(texts[:64])
            t0 = time.perf_counter()
            model.encode(texts)
            res["inproc"][f"st-{config}"] = round(time.perf_counter() - t0, 3)
            del model
    if "process" in args.modes:
        log(f"[{name}] whole processes")
        store = tmp / f"{name}-store-proc"
        base = ["featurize", str(corpus), "--store", str(store), "--no-laser", "--device",
                "cpu", "--compute-dtype", args.compute_dtype, "--json"]
        wall, rss, out = run_process(featstore_cmd(*base), env, tmp)
        summary = json.loads(out)
        noop_wall, _, _ = run_process(featstore_cmd(*base), env, tmp)
        res["proc"] = {"featurize": round(wall, 3), "featurize_rss_mb": rss and round(rss, 1),
                       "noop": round(noop_wall, 3), "pass_seconds": summary["pass_seconds"]}
        for config in args.st_configs:
            if config in res.get("skipped", {}):
                continue
            script = tmp / "st_run.py"
            script.write_text(ST_SCRIPT.format(threads=args.threads, bench=str(REPO / "bench"),
                                               csv=str(corpus), path=model_path, config=config,
                                               msl=max_seq_length))
            log(f"[{name}] process st-{config}")
            wall, rss, out = run_process([sys.executable, str(script)], env, tmp)
            st_rss = rss or float(out.split()[-1])
            res["proc"][f"st-{config}"] = round(wall, 3)
            res["proc"][f"st-{config}_rss_mb"] = round(st_rss, 1)
    return res


def startup(env: dict, tmp: Path, store: Path | None) -> dict:
    out = {}
    for label, args in (("help", ["--help"]), ("info", ["info", "--store", str(store)])):
        if label == "info" and store is None:
            continue
        best = min(run_process(featstore_cmd(*args), env, tmp)[0] for _ in range(3))
        out[label] = round(best, 3)
    return out


def head_check(data: Path, limit: int | None, tmp: Path) -> dict:
    """The strong mean-max MLP recipe (512 wide, 5 seeds averaged) on bf16-computed vs
    fp32-computed features, Banking77 train -> test; the same seeds on both."""
    from featstore.featurize.driver import featurize_corpus
    from featstore.featurize.options import FeaturizeOptions
    from featstore.heads import HeadClassifier
    from featstore.selection.recipes import STRONG
    from featstore.store import open_store

    df = banking77(data, None)
    if limit:  # keep both splits: a sample of each, in proportion
        df = pd.concat([g.sample(n=max(1, round(limit * len(g) / len(df))), random_state=0)
                        for _, g in df.groupby("split")], ignore_index=True)
    corpus = tmp / "b77-head.csv"
    df.to_csv(corpus, index=False)
    out = {"train_rows": int((df.split == "train").sum()), "test_rows": int((df.split == "test")
                                                                             .sum())}
    for dtype in ("float32", "bfloat16"):
        log(f"[head] featurize Banking77 with compute dtype {dtype}")
        store_dir = tmp / f"head-{dtype}"
        featurize_corpus(corpus, store_dir, FeaturizeOptions(device="cpu", laser=False,
                                                             compute_dtype=dtype),
                         name="b77", progress=False, warn=lambda m: None)
        store = open_store(store_dir)
        rows = store.dataset("b77")
        train, test = rows[rows.split == "train"], rows[rows.split == "test"]
        test = test[test.label.isin(set(train.label))]  # a sample may miss a label in train
        out["test_rows"] = len(test)
        log(f"[head] mean-max MLP x5 seeds on {dtype} features")
        clf = HeadClassifier(**STRONG, seed=0).fit(store, train)
        out[dtype] = round(100 * clf.score(store, test), 2)
    out["difference_points"] = round(out["bfloat16"] - out["float32"], 2)
    return out


# -- report -----------------------------------------------------------------------------------
def ratios(res: dict, where: str) -> dict:
    got = res.get(where)
    if not got:
        return {}
    st = {k: v for k, v in got.items() if k.startswith("st-") and not k.endswith("_mb") and v}
    if not st:
        return {}
    fastest = min(st, key=st.get)
    return {"fastest_st": fastest, "vs_fastest": round(st[fastest] / got["featurize"], 3),
            **{f"vs_{k}": round(v / got["featurize"], 3) for k, v in st.items()}}


def print_report(result: dict) -> None:
    print(f"load average at start {result['load_start']}, at end {result['load_end']}; "
          f"threads {result['threads']}; compute dtype {result['compute_dtype']} "
          f"(auto here: {result['auto_compute_dtype']}); CPU bf16 units: "
          f"{result['cpu_native_bf16']}")
    for res in result["corpora"]:
        n, tok = res["texts"], res["tokens"]
        print(f"\n== {res['corpus']}: {n} texts, {tok} tokens ({res['tokens_per_text']}/text)"
              + (f", st max_seq_length {res['st_max_seq_length']}"
                 if res["st_max_seq_length"] else ""))
        for where, label in (("inproc", "in-process"), ("proc", "whole process")):
            got = res.get(where)
            if not got:
                continue
            print(f"  {label}:")
            for k in ["featurize", *[k for k in got if k.startswith("st-")
                                     and not k.endswith("_mb")]]:
                s = got[k]
                if not s:
                    continue
                rss = got.get(f"{k}_rss_mb") or got.get("featurize_rss_mb" if k == "featurize"
                                                        else "")
                print(f"    {k:14s} {s:8.2f} s  {n / s:8.1f} texts/s  {tok / s:9.0f} tokens/s"
                      + (f"  peak RSS {rss:.0f} MB" if rss else ""))
            r = res.get(f"ratios_{where}", {})
            if r:
                others = ", ".join(f"{k[3:]} {v:.2f}x" for k, v in r.items()
                                   if k.startswith("vs_st"))
                print(f"    featurize / fastest st ({r['fastest_st']}): {r['vs_fastest']:.2f}x "
                      f"(target >= 1.3); per config: {others}")
            print(f"    no-op re-run {got['noop']:.3f} s = "
                  f"{100 * got['noop'] / got['featurize']:.1f}% of the first pass"
                  + (" (target < 5%)" if where == "proc" else ""))
        for config, why in res.get("skipped", {}).items():
            print(f"  st-{config} not measured: {why}")
    s = result.get("startup")
    if s:
        print(f"\nstart-up: featstore --help {s['help']:.3f} s"
              + (f", featstore info {s['info']:.3f} s" if "info" in s else "")
              + " (target < 0.5 s)")
    h = result.get("head")
    if h:
        print(f"head (Banking77 mean-max MLP, {h['train_rows']} train / {h['test_rows']} test): "
              f"float32 features {h['float32']:.2f}, bfloat16 features {h['bfloat16']:.2f}, "
              f"difference {h['difference_points']:+.2f} points (target within 0.3)")
    print(f"peak RSS of this process: {result['peak_rss_mb']:.0f} MB")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data dir")
    ap.add_argument("--corpora", default="banking77,long")
    ap.add_argument("--limit", type=int, default=None, help="first N Banking77 texts")
    ap.add_argument("--long-limit", type=int, default=None, help="first N long texts")
    ap.add_argument("--long-tokens", type=int, default=300, help="tokens per long text")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compute-dtype", default="auto")
    ap.add_argument("--st-configs", default=",".join(ST_CONFIGS))
    ap.add_argument("--modes", default="inprocess,process")
    ap.add_argument("--head-check", action="store_true",
                    help="also train a head on bf16 and on fp32 features (slow)")
    ap.add_argument("--head-limit", type=int, default=None,
                    help="Banking77 rows for the head check (default: all 13,083)")
    ap.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    args = ap.parse_args(argv)
    args.st_configs = [c for c in args.st_configs.split(",") if c]
    args.modes = args.modes.split(",")

    import torch
    from transformers import AutoTokenizer

    from featstore.featurize import cpu_features
    from featstore.featurize.model_names import resolve_model

    torch.set_num_threads(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _, model_path = resolve_model(None)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    native = cpu_features.cpu_has_native_bf16()
    result: dict = {"load_start": round(os.getloadavg()[0], 2), "threads": args.threads,
                    "compute_dtype": args.compute_dtype, "cpu_native_bf16": native,
                    "auto_compute_dtype": "bfloat16" if native else "float32", "corpora": []}
    with tempfile.TemporaryDirectory(prefix="featstore-bench-") as tmp_name:
        tmp = Path(tmp_name)
        env["FEATSTORE_CACHE_DIR"] = str(tmp / "cache")
        os.environ["FEATSTORE_CACHE_DIR"] = str(tmp / "cache")
        corpora = [c for c in args.corpora.split(",") if c]
        for name in corpora:
            if name == "banking77":
                df, msl = banking77(args.data, args.limit), None
            elif name == "long":
                df, msl = long_texts(args.data, tokenizer, args.long_tokens,
                                     args.long_limit), 512
            else:
                sys.exit(f"error: unknown corpus {name!r}")
            res = bench_corpus(name, df, args, tmp, model_path, tokenizer, env, msl)
            res["ratios_inproc"], res["ratios_proc"] = ratios(res, "inproc"), ratios(res, "proc")
            result["corpora"].append(res)
        store = next((p for p in tmp.glob("*-store-proc")), None)
        result["startup"] = startup(env, tmp, store)
        if args.head_check:
            result["head"] = head_check(args.data, args.head_limit, tmp)
        shutil.rmtree(tmp / "cache", ignore_errors=True)
    result["load_end"] = round(os.getloadavg()[0], 2)
    result["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
