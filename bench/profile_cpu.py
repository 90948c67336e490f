"""Where featurize's CPU time goes: an in-process pass on the torch runtime under torch.profiler,
its operators' own CPU time grouped into what a person can act on, for short (Banking77) and
long (~300-token) texts, on the bundled MiniLM or all-mpnet-base-v2 (`--model mpnet`, installed
by bench/models.py).

  matrix products   the Linear layers (addmm, mm, linear and oneDNN's own kernels)
  attention         scaled-dot-product attention and its softmax / batched products
  norms             layer norms
  activations       GELU and other element-wise activations
  reductions        featstore's per-layer CLS / masked mean / max and the dtype casts
  other operators   every other torch operator (embeddings, adds, copies, views)
  outside torch     the pass's wall time less its operators: tokenizing, batching, hashing,
                    writing shards, Python

The profiler adds a little time per operator, so shares are read against each other, not as
throughput (bench/featurize_vs_st.py measures that).

  python bench/profile_cpu.py [--model minilm|mpnet|DIR] [--limit 1000] [--long-limit 50]
                              [--compute-dtype auto] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from featurize_vs_st import DATA, banking77, long_texts, resolve_model_path  # noqa: E402

GROUPS = (  # first match wins; names as torch.profiler reports them
    ("attention", ("scaled_dot_product", "flash_attention", "softmax", "bmm", "baddbmm")),
    ("matrix products", ("addmm", "aten::mm", "aten::linear", "mkldnn", "onednn", "matmul")),
    ("norms", ("layer_norm",)),
    ("activations", ("gelu", "tanh", "relu", "silu")),
    ("reductions", ("aten::max", "aten::sum", "aten::amax", "aten::mean", "aten::div",
                    "aten::to", "_to_copy", "masked_fill", "aten::where")),
)


def group_of(name: str) -> str:
    for group, keys in GROUPS:
        if any(k in name for k in keys):
            return group
    return "other operators"


def profile_pass(corpus: Path, store: Path, model_path: str, compute_dtype: str) -> dict:
    from torch.profiler import ProfilerActivity, profile

    from featstore.featurize.driver import featurize_corpus
    from featstore.featurize.options import FeaturizeOptions

    options = FeaturizeOptions(model=model_path, device="cpu", laser=False,
                               compute_dtype=compute_dtype, runtime="torch")
    warm = store.with_name(store.name + "-warm")
    featurize_corpus(corpus, warm, options, progress=False, warn=lambda m: None)
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        summary = featurize_corpus(corpus, store, options, progress=False,
                                   warn=lambda m: None).to_dict()
    wall = time.perf_counter() - t0 - summary["load_seconds"]
    shares: dict[str, float] = {}
    others: dict[str, float] = {}
    for event in prof.key_averages():
        group = group_of(event.key)
        shares[group] = shares.get(group, 0.0) + event.self_cpu_time_total / 1e6
        if group == "other operators":
            others[event.key] = event.self_cpu_time_total / 1e6
    # an operator's time is counted on the thread that called it (its intra-op threads work
    # inside that span), so operators and the rest share the pass's wall time
    ops = sum(shares.values())
    shares["outside torch"] = max(wall - ops, 0.0)
    total = max(wall, ops)
    shares = {g: round(s / total, 3) for g, s in sorted(shares.items(), key=lambda x: -x[1])}
    top = sorted(others.items(), key=lambda x: -x[1])[:6]
    return {"texts": summary["new"], "wall_s": round(wall, 2), "operator_s": round(ops, 2),
            "shares": shares, "top_other": {k: round(v / total, 3) for k, v in top}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--long-limit", type=int, default=50)
    ap.add_argument("--long-tokens", type=int, default=300)
    ap.add_argument("--compute-dtype", default="auto")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(2)
    model_name, model_path = resolve_model_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    corpora = {"banking77": banking77(args.data, args.limit),
               "long": long_texts(args.data, tokenizer, args.long_tokens, args.long_limit)}
    out = {"model": model_name, "compute_dtype": args.compute_dtype, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, df in corpora.items():
            path = Path(tmp) / f"{name}.csv"
            df[["text"]].to_csv(path, index=False)
            out["runs"][name] = profile_pass(path, Path(tmp) / f"store-{name}", model_path,
                                             args.compute_dtype)
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"{model_name}, compute dtype {args.compute_dtype}, torch runtime")
    for name, r in out["runs"].items():
        print(f"\n{name}: {r['texts']} texts, pass {r['wall_s']} s with the model loaded "
              f"(operators {r['operator_s']} s)")
        for group, share in r["shares"].items():
            print(f"  {group:<16} {100 * share:5.1f}%")
        print("  largest other operators: " + ", ".join(
            f"{k} {100 * v:.1f}%" for k, v in r["top_other"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
