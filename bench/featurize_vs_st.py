"""Featurize vs sentence-transformers, side by side in one run: in-process and whole processes,
on Banking77 (short queries) and a long-text corpus (SST-2 sentences joined into ~300-token
texts), on the bundled MiniLM or a base-size encoder (`--model mpnet`: all-mpnet-base-v2,
installed by bench/models.py), with start-up and no-op figures, peak RSS, the CPU's flags, the
load average, the machine's matrix-product roofline and the head accuracy of every configuration.

What is timed (each corpus):
  featurize[R]   `featurize_corpus` into a fresh store with `--runtime R` (auto, torch,
                 openvino): all layers, cls + mean + max (+ pooler), float16, written, LASER
                 off, `--compute-dtype` (default auto). In-process: the summary's
                 `pass_seconds` less its `load_seconds` (as ST's encode() is timed, with the
                 model loaded), after a warm-up pass on 64 texts (which fills the fingerprint
                 and OpenVINO caches); whole process: `featstore featurize` wall time.
  no-op          the same featurize again on the same store (nothing new).
  st-CONFIG      sentence-transformers `encode(texts)` (its default batch size, 32), each
                 configuration in its own process run by bench/st_peer.py with `--st-python`
                 (default: bench/.st-venv/bin/python, made on first use with
                 `sentence-transformers[onnx,openvino]`): fp32, bf16 (bfloat16 weights), onnx,
                 onnx-int8 (dynamic int8 for AVX512-VNNI), openvino (its default precision: bf16
                 where the CPU has the units), openvino-f32. In-process: encode() after a
                 warm-up; whole process: the script's wall time (imports, load, encode).
  head check     (--head-check, Banking77 only) logistic regression (C 1) on each
                 configuration's sentence vectors (featurize: the top layer's mean), train ->
                 test; a peer counts for the ratio only if it is within 0.3 points of st-fp32.
  roofline       (--roofline) the throughput of the encoder's own matrix shapes (its Linear
                 layers at 4,096 rows) in float32 and bfloat16; each featurize figure is then
                 also a fraction of it (FLOPs per token: 2 x the Linear weights, plus attention).
Ratios are texts/s of featurize[auto] over the fastest eligible sentence-transformers
configuration (target >= 1.3). Only compare figures from the same run: the load average is
printed at start and end.

  python bench/featurize_vs_st.py --data ../shared/data [--model minilm|mpnet|DIR]
      [--corpora banking77,long] [--limit N] [--long-limit N] [--runtimes auto,torch,openvino]
      [--st-configs fp32,bf16,onnx,onnx-int8,openvino,openvino-f32] [--st-python PY]
      [--modes inprocess,process] [--head-check] [--roofline] [--json]
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

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]
ST_CONFIGS = ("fp32", "bf16", "onnx", "onnx-int8", "openvino", "openvino-f32")
ST_ENV = REPO / "bench" / ".st-venv"


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
    if not limit:
        return df
    # a sample of each split in proportion, so the head check has train and test rows
    return pd.concat([g.sample(n=max(1, round(limit * len(g) / len(df))), random_state=0)
                      for _, g in df.groupby("split")], ignore_index=True)


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


# -- sentence-transformers, in its own environment -----------------------------------------------
def st_python(given: str | None) -> str:
    """The interpreter with sentence-transformers' onnx and openvino extras; the default one is
    made on first use (pip, from the package index) with the same pinned torch."""
    if given:
        return given
    py = ST_ENV / "bin" / "python"
    if not py.exists():
        log(f"[st] making {ST_ENV} (sentence-transformers[onnx,openvino]; a few minutes, once)")
        subprocess.run([sys.executable, "-m", "venv", str(ST_ENV)], check=True)
        for pkgs in (["torch==2.13.0"], ["sentence-transformers[onnx,openvino]", "pandas"]):
            subprocess.run([str(py), "-m", "pip", "install", "-q", *pkgs], check=True)
    return str(py)


def run_st(py: str, model_path: str, config: str, corpus: Path, threads: int, msl: int | None,
           env: dict, tmp: Path, vectors: Path | None = None) -> dict:
    cmd = [py, str(REPO / "bench" / "st_peer.py"), model_path, config, str(corpus), str(threads),
           str(msl)]
    if vectors is not None:
        cmd += ["--vectors", str(vectors)]
    wall, rss, out = run_process(cmd, env, tmp)
    got = json.loads(out.strip().splitlines()[-1])
    return {"inproc": got["encode"], "proc": round(wall, 3),
            "rss_mb": round(rss or got["rss_mb"], 1), "load": got["load"]}


# -- whole processes ------------------------------------------------------------------------------
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


# -- the roofline ---------------------------------------------------------------------------------
def linear_shapes(model_path: str) -> tuple[list[tuple[int, int]], int, int]:
    """(in, out) of every Linear layer of the encoder, its hidden width and layer count."""
    import torch
    from transformers import AutoModel

    net = AutoModel.from_pretrained(model_path)
    shapes = [(m.in_features, m.out_features) for m in net.modules()
              if isinstance(m, torch.nn.Linear)]
    return shapes, int(net.config.hidden_size), int(net.config.num_hidden_layers)


def roofline(shapes: list[tuple[int, int]], threads: int) -> dict:
    """GFLOP/s of the encoder's own Linear shapes at 4,096 rows, float32 and bfloat16 (the
    best of 5 runs of all of them, after a warm-up)."""
    import torch

    torch.set_num_threads(threads)
    out = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        unique = sorted(set(shapes))
        xs = {k: torch.randn(4096, k, dtype=dtype) for k, _ in unique}
        ws = {(k, n): torch.randn(n, k, dtype=dtype) for k, n in unique}
        for k, n in unique:
            torch.nn.functional.linear(xs[k], ws[(k, n)])
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for k, n in shapes:
                torch.nn.functional.linear(xs[k], ws[(k, n)])
            best = min(best, time.perf_counter() - t0)
        flops = sum(2 * 4096 * k * n for k, n in shapes)
        out[name] = round(flops / best / 1e9, 1)
    return out


def flops_per_token(shapes: list[tuple[int, int]], hidden: int, layers: int,
                    tokens_per_text: float) -> float:
    """Linear layers (2 FLOPs per weight) plus attention's two products over the text."""
    return 2.0 * sum(k * n for k, n in shapes) + 4.0 * layers * hidden * tokens_per_text


# -- heads ---------------------------------------------------------------------------------------
def head_accuracy(x: np.ndarray, split: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    tr, te = split == "train", split == "test"
    scaler = StandardScaler().fit(x[tr])
    clf = LogisticRegression(C=1.0, max_iter=1000).fit(scaler.transform(x[tr]), labels[tr])
    return round(100 * float((clf.predict(scaler.transform(x[te])) == labels[te]).mean()), 2)


# -- one corpus -----------------------------------------------------------------------------------
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
    res: dict = {"corpus": name, "texts": n, "tokens": tokens,
                 "tokens_per_text": round(tokens / n, 1), "st_max_seq_length": max_seq_length,
                 "inproc": {}, "proc": {}, "rss_mb": {}, "runtime_used": {}}
    heads = args.head_check and name == "banking77"
    for runtime in args.runtimes:
        label = f"featurize[{runtime}]"
        options = FeaturizeOptions(model=model_path, device="cpu", laser=False,
                                   compute_dtype=args.compute_dtype, runtime=runtime)
        if "inprocess" in args.modes:
            log(f"[{name}] in-process {label} ({n} texts, {tokens} tokens)")
            featurize_corpus(warm, tmp / f"{name}-{runtime}-warm", options, name=name,
                             progress=False, warn=lambda m: None)
            store = tmp / f"{name}-{runtime}-inproc"
            first = featurize_corpus(corpus, store, options, name=name, progress=False,
                                     warn=lambda m: None).to_dict()
            again = featurize_corpus(corpus, store, options, name=name, progress=False,
                                     warn=lambda m: None).to_dict()
            # as ST's encode() is timed: with the model loaded (the load is in whole-process)
            res["inproc"][label] = round(first["pass_seconds"] - first["load_seconds"], 3)
            res["inproc"][f"{label} no-op"] = again["pass_seconds"]
            if heads and runtime == "auto":
                from featstore.store import open_store

                s = open_store(store)
                table = s.dataset(name)
                res.setdefault("head", {})[label] = head_accuracy(
                    s.features(name, "mean", -1).astype(np.float32), table["split"].to_numpy(),
                    table["label"].to_numpy())
        if "process" in args.modes:
            log(f"[{name}] whole process {label}")
            store = tmp / f"{name}-{runtime}-proc"
            base = ["featurize", str(corpus), "--store", str(store), "--no-laser", "--model",
                    model_path, "--device", "cpu", "--compute-dtype", args.compute_dtype,
                    "--runtime", runtime, "--json", "--no-progress"]
            wall, rss, out = run_process(featstore_cmd(*base), env, tmp)
            res["runtime_used"][label] = _runtime_of(store)
            noop, _, _ = run_process(featstore_cmd(*base), env, tmp)
            res["proc"][label] = round(wall, 3)
            res["proc"][f"{label} no-op"] = round(noop, 3)
            res["rss_mb"][label] = rss and round(rss, 1)
    py = st_python(args.st_python) if args.st_configs else None
    for config in args.st_configs:
        label = f"st-{config}"
        log(f"[{name}] {label}")
        vec = tmp / f"{name}-{config}.npy" if heads else None
        try:
            got = run_st(py, model_path, config, corpus, args.threads, max_seq_length, env, tmp,
                         vec)
        except RuntimeError as exc:  # a backend that cannot run here: say so and go on
            res.setdefault("skipped", {})[label] = str(exc)[-200:]
            continue
        res["inproc"][label], res["proc"][label] = got["inproc"], got["proc"]
        res["rss_mb"][label] = got["rss_mb"]
        if vec is not None:
            res.setdefault("head", {})[label] = head_accuracy(
                np.load(vec), df["split"].to_numpy(), df["label"].to_numpy())
    return res


def _runtime_of(store: Path) -> str:
    from featstore.store import open_store

    s = open_store(store)
    return ",".join(sorted(s.rows_by_attr(s.resolve_encoder(), "runtime")))


def startup(env: dict, tmp: Path, store: Path | None) -> dict:
    out = {}
    for label, args in (("help", ["--help"]), ("info", ["info", "--store", str(store)])):
        if label == "info" and store is None:
            continue
        best = min(run_process(featstore_cmd(*args), env, tmp)[0] for _ in range(3))
        out[label] = round(best, 3)
    return out


# -- report ---------------------------------------------------------------------------------------
def eligible(res: dict) -> list[str]:
    """Peer configurations whose head accuracy is within 0.3 points of st-fp32 (all of them
    without a head check)."""
    peers = [k for k in res["inproc"] if k.startswith("st-")]
    head = res.get("head", {})
    if "st-fp32" not in head:
        return peers
    return [k for k in peers if k in head and abs(head[k] - head["st-fp32"]) <= 0.3]


def ratios(res: dict, where: str) -> dict:
    got = res[where]
    ours = got.get("featurize[auto]")
    peers = {k: got[k] for k in eligible(res) if got.get(k)}
    if not ours or not peers:
        return {}
    fastest = min(peers, key=peers.get)
    return {"fastest_peer": fastest, "vs_fastest": round(peers[fastest] / ours, 3),
            **{f"vs_{k}": round(v / ours, 3) for k, v in got.items()
               if k.startswith("st-") and v}}


def print_report(result: dict) -> None:
    print(f"cpu {result['cpu']}; flags {' '.join(result['flags'])}; threads "
          f"{result['threads']}; load average at start {result['load_start']}, at end "
          f"{result['load_end']}")
    print(f"model {result['model']} ({result['model_path']}); compute dtype "
          f"{result['compute_dtype']} (auto here: {result['auto_compute_dtype']})")
    roof = result.get("roofline")
    if roof:
        print(f"roofline: the encoder's Linear shapes at 4,096 rows: float32 {roof['float32']} "
              f"GFLOP/s, bfloat16 {roof['bfloat16']} GFLOP/s")
    for res in result["corpora"]:
        n, tok = res["texts"], res["tokens"]
        print(f"\n== {res['corpus']}: {n} texts, {tok} tokens ({res['tokens_per_text']}/text)"
              + (f", st max_seq_length {res['st_max_seq_length']}"
                 if res["st_max_seq_length"] else ""))
        head = res.get("head", {})
        ok = set(eligible(res))
        for where, label in (("inproc", "in-process"), ("proc", "whole process")):
            got = res[where]
            if not got:
                continue
            print(f"  {label}:")
            for k, s in got.items():
                if k.endswith("no-op") or not s:
                    continue
                extra = []
                if k in head:
                    extra.append(f"head {head[k]:.2f}" + ("" if k in ok or not k.startswith("st")
                                                           else " (not eligible)"))
                rss = res["rss_mb"].get(k)
                if rss and where == "proc":
                    extra.append(f"peak RSS {rss:.0f} MB")
                if k in res.get("roofline_fraction", {}).get(where, {}):
                    extra.append(f"{100 * res['roofline_fraction'][where][k]:.0f}% of roofline")
                if where == "proc" and k in res["runtime_used"]:
                    extra.append(f"ran on {res['runtime_used'][k]}")
                print(f"    {k:22s} {s:8.2f} s {n / s:8.1f} texts/s {tok / s:9.0f} tokens/s"
                      + (f"  ({'; '.join(extra)})" if extra else ""))
            r = res.get(f"ratios_{where}", {})
            if r:
                others = ", ".join(f"{k[3:]} {v:.2f}x" for k, v in r.items()
                                   if k.startswith("vs_st"))
                print(f"    featurize[auto] / fastest eligible peer ({r['fastest_peer']}): "
                      f"{r['vs_fastest']:.2f}x (target >= 1.3); per peer: {others}")
            if got.get("featurize[auto] no-op"):
                share = got["featurize[auto] no-op"] / got["featurize[auto]"]
                print(f"    no-op re-run {got['featurize[auto] no-op']:.3f} s = "
                      f"{100 * share:.1f}% of the first pass (target < 5%)")
        for config, why in res.get("skipped", {}).items():
            print(f"  {config} not measured: {why}")
    s = result.get("startup")
    if s:
        print(f"\nstart-up: featstore --help {s['help']:.3f} s"
              + (f", featstore info {s['info']:.3f} s" if "info" in s else "")
              + " (target < 0.5 s)")
    print(f"peak RSS of this process: {result['peak_rss_mb']:.0f} MB")


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def resolve_model_path(model: str) -> tuple[str, str]:
    """(label, path) of --model: minilm (bundled), mpnet (bench/models.py) or a directory."""
    if model == "minilm":
        from featstore.featurize.model_names import resolve_model

        return "all-MiniLM-L6-v2", resolve_model(None)[1]
    if model == "mpnet":
        sys.path.insert(0, str(REPO / "bench"))
        from models import mpnet_path

        return "all-mpnet-base-v2", str(mpnet_path())
    return Path(model).name, str(Path(model).resolve())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data dir")
    ap.add_argument("--model", default="minilm", help="minilm, mpnet or a model directory")
    ap.add_argument("--corpora", default="banking77,long")
    ap.add_argument("--limit", type=int, default=None,
                    help="N Banking77 texts (a seeded sample of each split, in proportion)")
    ap.add_argument("--long-limit", type=int, default=None, help="first N long texts")
    ap.add_argument("--long-tokens", type=int, default=300, help="tokens per long text")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compute-dtype", default="auto")
    ap.add_argument("--runtimes", default="auto,torch,openvino")
    ap.add_argument("--st-configs", default=",".join(ST_CONFIGS))
    ap.add_argument("--st-python", default=None,
                    help="interpreter with sentence-transformers[onnx,openvino] (default: "
                         "bench/.st-venv, made on first use)")
    ap.add_argument("--modes", default="inprocess,process")
    ap.add_argument("--head-check", action="store_true",
                    help="logistic regression on every configuration's vectors (Banking77)")
    ap.add_argument("--roofline", action="store_true",
                    help="measure the encoder's matrix-product throughput")
    ap.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    args = ap.parse_args(argv)
    args.st_configs = [c for c in args.st_configs.split(",") if c]
    args.runtimes = [r for r in args.runtimes.split(",") if r]
    if "auto" not in args.runtimes:
        args.runtimes.insert(0, "auto")
    args.modes = args.modes.split(",")

    import torch
    from transformers import AutoTokenizer

    from featstore.featurize import cpu_features
    from featstore.featurize.cpu_features import _cpuinfo_flags

    torch.set_num_threads(args.threads)
    label, model_path = resolve_model_path(args.model)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    native = cpu_features.cpu_has_native_bf16()
    flags = sorted(f for f in _cpuinfo_flags() if f in ("avx2", "avx512f", "avx512_bf16",
                                                        "avx512_vnni", "amx_bf16", "amx_int8"))
    result: dict = {"load_start": round(os.getloadavg()[0], 2), "threads": args.threads,
                    "cpu": cpu_name(), "flags": flags, "model": label, "model_path": model_path,
                    "compute_dtype": args.compute_dtype,
                    "auto_compute_dtype": "bfloat16" if native else "float32", "corpora": []}
    shapes, hidden, layers = linear_shapes(model_path)
    if args.roofline:
        log("[roofline] the encoder's Linear shapes, float32 and bfloat16")
        result["roofline"] = roofline(shapes, args.threads)
    with tempfile.TemporaryDirectory(prefix="featstore-bench-") as tmp_name:
        tmp = Path(tmp_name)
        env["FEATSTORE_CACHE_DIR"] = str(tmp / "cache")
        os.environ["FEATSTORE_CACHE_DIR"] = str(tmp / "cache")
        for name in [c for c in args.corpora.split(",") if c]:
            if name == "banking77":
                df, msl = banking77(args.data, args.limit), None
            elif name == "long":
                df, msl = long_texts(args.data, tokenizer, args.long_tokens,
                                     args.long_limit), 512
            else:
                sys.exit(f"error: unknown corpus {name!r}")
            res = bench_corpus(name, df, args, tmp, model_path, tokenizer, env, msl)
            for where in ("inproc", "proc"):
                res[f"ratios_{where}"] = ratios(res, where)
            if "roofline" in result:
                per_token = flops_per_token(shapes, hidden, layers, res["tokens_per_text"])
                peak = result["roofline"][result["auto_compute_dtype"]] * 1e9
                res["roofline_fraction"] = {
                    w: {k: round(per_token * res["tokens"] / v / peak, 3)
                        for k, v in res[w].items() if k.startswith("featurize") and v
                        and not k.endswith("no-op")} for w in ("inproc", "proc")}
            result["corpora"].append(res)
        store = next(iter(sorted(tmp.glob("*-auto-proc"))), None)
        result["startup"] = startup(env, tmp, store)
        shutil.rmtree(tmp / "cache", ignore_errors=True)
    result["load_end"] = round(os.getloadavg()[0], 2)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
