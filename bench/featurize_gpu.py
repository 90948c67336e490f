"""Featurize throughput on the GPU path: texts/s, how busy the device is, and store MB/s.

Runs, on one synthetic corpus (see synthetic.py), each into a fresh temporary store, LASER off:
  default             the bundled all-MiniLM-L6-v2 (6 layers, 384 wide), all layers, all features
  roberta-base-shape  a random encoder of roberta-base's shape (12 layers, 768 wide), all layers
  roberta-base-cut    the same with --layers -1 --features mean: what cutting the output saves
Each is warmed up on a few texts first. Times are the summary's `pass_seconds` (open store ->
dataset commit: reading, tokenizing, forward, reductions, shard writes with fsync, commits);
model loading is left out.

"busy" is the share of the pass spent inside Encoder.forward, timed on the device with CUDA events
(host->device copy, the model, per-layer reductions, device->host copy). It is an upper bound on
the device's utilisation: launch gaps inside a forward count as busy. --profile also sums the
CUDA kernel and memcpy time from torch.profiler, a lower bound. On CPU the same share is timed
with the wall clock: what is not forward is tokenizing, batching and writing.

Without a GPU the script says "no GPU: ran on CPU" and runs a small --limit, so the path is
exercised everywhere; those figures are CPU figures, not GPU ones.

  python bench/featurize_gpu.py [--limit N] [--models default,roberta-base-shape,roberta-base-cut]
                                [--compute-dtype auto|float16|bfloat16|float32] [--profile] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import build_random_encoder, write_corpus  # noqa: E402

from featstore.featurize.driver import featurize_corpus  # noqa: E402
from featstore.featurize.encoder import Encoder  # noqa: E402
from featstore.featurize.options import FeaturizeOptions  # noqa: E402

RUNS = {
    "default": (None, {}),
    "roberta-base-shape": ("roberta-base-shape", {}),
    "roberta-base-cut": ("roberta-base-shape", {"layers": "-1", "features": ("mean",)}),
}


class ForwardTimer:
    """Time spent in Encoder.forward: CUDA events on a GPU, the wall clock on CPU."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self.cpu_seconds = 0.0
        self.calls = 0

    def __enter__(self) -> ForwardTimer:
        self._orig = orig = Encoder.forward
        timer = self

        def timed(enc, *args, **kwargs):
            timer.calls += 1
            if timer.cuda:
                start, end = (torch.cuda.Event(enable_timing=True),
                              torch.cuda.Event(enable_timing=True))
                start.record()
                out = orig(enc, *args, **kwargs)
                end.record()
                timer.events.append((start, end))
                return out
            t0 = time.perf_counter()
            out = orig(enc, *args, **kwargs)
            timer.cpu_seconds += time.perf_counter() - t0
            return out

        Encoder.forward = timed
        return self

    def __exit__(self, *exc: object) -> None:
        Encoder.forward = self._orig
        if self.cuda:
            torch.cuda.synchronize()

    @property
    def seconds(self) -> float:
        if self.cuda:
            return sum(s.elapsed_time(e) for s, e in self.events) / 1000.0
        return self.cpu_seconds


def _kernel_seconds(prof) -> float:
    total_us = 0.0
    for e in prof.key_averages():
        total_us += float(getattr(e, "self_device_time_total",
                                  getattr(e, "self_cuda_time_total", 0.0)) or 0.0)
    return total_us / 1e6


def _run(name: str, model: str | None, extra: dict, corpus: Path, warm: Path, tmp: Path,
         args: argparse.Namespace, cuda: bool) -> dict:
    opts = FeaturizeOptions(model=model, laser=False, device=args.device,
                            compute_dtype=args.compute_dtype, batch_tokens=args.batch_tokens,
                            **extra)
    featurize_corpus(warm, tmp / f"warm-{name}", opts, progress=False)
    profiler = nullcontext()
    if args.profile and cuda:
        from torch.profiler import ProfilerActivity, profile

        profiler = profile(activities=[ProfilerActivity.CUDA])
    with profiler as prof, ForwardTimer(cuda) as timer:
        s = featurize_corpus(corpus, tmp / f"store-{name}", opts, progress=False).to_dict()
    row = {
        "run": name,
        "device": "cuda" if cuda else "cpu",
        "texts": s["new"],
        "windows": s["windows"],
        "layers": s["layers"],
        "features": s["features"],
        "pass_seconds": s["pass_seconds"],
        "texts_per_s": s["texts_per_s"],
        "mb_per_s": s["mb_per_s"],
        "bytes_per_text": round(s["bytes_written"] / max(s["new"], 1)),
        "forward_calls": timer.calls,
        "busy": round(timer.seconds / s["pass_seconds"], 3),
    }
    if args.profile and cuda:
        row["kernel_busy"] = round(_kernel_seconds(prof) / s["pass_seconds"], 3)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--limit", type=int, default=None,
                   help="synthetic texts (default: 20000 on a GPU, 128 on CPU)")
    p.add_argument("--models", default=",".join(RUNS), help=f"comma list of {', '.join(RUNS)}")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--compute-dtype", default="auto",
                   choices=["auto", "float32", "float16", "bfloat16"])
    p.add_argument("--batch-tokens", type=int, default=None)
    p.add_argument("--profile", action="store_true", help="also sum CUDA kernel time (GPU only)")
    p.add_argument("--models-dir", default=None,
                   help="where to keep built random encoders (default: a temporary directory)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = set(names) - set(RUNS)
    if unknown:
        p.error(f"unknown --models {', '.join(sorted(unknown))}; choose from {', '.join(RUNS)}")
    cuda = torch.cuda.is_available() and args.device != "cpu"
    limit = args.limit or (20000 if cuda else 128)
    if cuda:
        print(f"GPU: {torch.cuda.get_device_name(0)}", file=sys.stderr)
    else:
        print(f"no GPU: ran on CPU ({torch.get_num_threads()} threads, {limit} texts); "
              "these are CPU figures, not GPU ones", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(prefix="featstore-gpu-bench-") as tmpdir:
        tmp = Path(tmpdir)
        models_dir = Path(args.models_dir) if args.models_dir else tmp / "models"
        corpus = write_corpus(tmp / "corpus.csv", limit, seed=0)
        warm = write_corpus(tmp / "warm.csv", 32, seed=1)
        for name in names:
            shape, extra = RUNS[name]
            model = str(build_random_encoder(shape, models_dir / shape)) if shape else None
            rows.append(_run(name, model, extra, corpus, warm, tmp, args, cuda))
            print(f"  {name}: {rows[-1]['texts_per_s']} texts/s", file=sys.stderr)
    if args.json:
        print(json.dumps({"cuda": cuda, "limit": limit, "runs": rows}, indent=1))
        return 0
    what = "GPU busy" if cuda else "forward share"
    print(f"{'run':<20} {'dev':<4} {'texts':>6} {'texts/s':>9} {'MB/s':>7} {'KB/text':>8} "
          f"{what:>13}" + ("  kernel busy" if args.profile and cuda else ""))
    for r in rows:
        line = (f"{r['run']:<20} {r['device']:<4} {r['texts']:>6} {r['texts_per_s']:>9.1f} "
                f"{r['mb_per_s']:>7.2f} {r['bytes_per_text'] / 1024:>8.1f} {r['busy']:>13.0%}")
        if "kernel_busy" in r:
            line += f"  {r['kernel_busy']:>11.0%}"
        print(line)
    by = {r["run"]: r for r in rows}
    if "roberta-base-shape" in by and "roberta-base-cut" in by:
        full, cut = by["roberta-base-shape"], by["roberta-base-cut"]
        fewer = full["bytes_per_text"] / cut["bytes_per_text"]
        speed = cut["texts_per_s"] / full["texts_per_s"]
        print(f"--layers -1 --features mean writes {fewer:.0f}x fewer bytes per text; "
              f"texts/s cut/full {speed:.2f} (same run, side by side)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
