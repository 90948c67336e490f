"""featurize's CPU attention (featstore/featurize/attention.py) against the stock transformers
attention of the same encoder, side by side in one process, on Banking77 (short queries) and
~300-token texts: the encoder's forward with featstore's reductions over the same length-sorted,
token-budget batches featurize makes, for two Encoders loaded from one model, one with
featstore's attention and one left as loaded. Rounds alternate the two (ABBA), so a host that
speeds up or slows down during the run moves both; medians and the ratio are printed, with each
round's figures. `--kernel` adds the attention kernels alone on [batch, heads, seq, head_dim]
shapes of one 4,096-token batch: torch's fused kernel, the explicit product and `attend`.

  python bench/attention_cpu.py [--model minilm|mpnet|DIR] [--limit 4000] [--long-limit 48]
                                [--rounds 8] [--compute-dtype auto] [--kernel] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from featurize_vs_st import DATA, banking77, long_texts, resolve_model_path  # noqa: E402


def encoders(model_path: str, compute_dtype: str):
    """(featstore's attention, stock) Encoders of one model, both on the torch runtime."""
    from featstore.featurize import encoder as encoder_mod

    fused = encoder_mod.Encoder(model_path, device="cpu", runtime="torch",
                                compute_dtype=compute_dtype)
    real = encoder_mod.use_fused_attention
    encoder_mod.use_fused_attention = lambda model, probe: False
    try:
        stock = encoder_mod.Encoder(model_path, device="cpu", runtime="torch",
                                    compute_dtype=compute_dtype)
    finally:
        encoder_mod.use_fused_attention = real
    return fused, stock


def texts_per_s(enc, windows, batch_tokens: int) -> float:
    from featstore.featurize.batching import token_budget_batches

    t0 = time.perf_counter()
    for idx in token_budget_batches(windows.lengths, batch_tokens):
        enc.forward([windows.input_ids[i] for i in idx])
    return len(windows.input_ids) / (time.perf_counter() - t0)


def compare(fused, stock, texts: list[str], rounds: int, batch_tokens: int) -> dict:
    windows = fused.windows(texts)
    arms = {"featstore": fused, "stock": stock}
    for enc in arms.values():  # warm-up: each batch shape once
        texts_per_s(enc, windows, batch_tokens)
    runs: dict[str, list[float]] = {name: [] for name in arms}
    for r in range(rounds):
        for name in (list(arms) if r % 2 == 0 else list(arms)[::-1]):
            runs[name].append(texts_per_s(arms[name], windows, batch_tokens))
    med = {name: statistics.median(v) for name, v in runs.items()}
    wins = sum(a > b for a, b in zip(runs["featstore"], runs["stock"], strict=True))
    return {"texts": len(texts), "tokens": int(windows.lengths.sum()),
            "median": {k: round(v, 1) for k, v in med.items()},
            "ratio": round(med["featstore"] / med["stock"], 3), "rounds_won": wins,
            "runs": {k: [round(x, 1) for x in v] for k, v in runs.items()}}


def kernel_table(heads: int, head_dim: int, dtype) -> list[dict]:
    """Milliseconds per call (median of 11) over one 4,096-token batch at each key length."""
    import torch
    import torch.nn.functional as F

    from featstore.featurize.attention import attend

    def ms(fn, *inputs) -> float:
        for _ in range(2):
            fn(*inputs)
        times = []
        for _ in range(11):
            t0 = time.perf_counter()
            fn(*inputs)
            times.append(time.perf_counter() - t0)
        return round(1e3 * statistics.median(times), 2)

    def fused_kernel(q, k, v, keep):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=keep)

    def explicit(q, k, v, keep):
        s = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
        return s.masked_fill(~keep, torch.finfo(s.dtype).min).softmax(-1) @ v

    gen = torch.Generator().manual_seed(0)
    rows = []
    for seq in (8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 96, 128, 320):
        batch = max(1, 4096 // seq)
        q, k, v = (torch.randn(batch, heads, seq, head_dim, generator=gen).to(dtype)
                   for _ in range(3))
        lengths = torch.randint(seq // 2, seq + 1, (batch,), generator=gen)
        keep = (torch.arange(seq)[None, :] < lengths[:, None])[:, None, None, :]
        rows.append({"seq": seq, "fused_kernel": ms(fused_kernel, q, k, v, keep),
                     "explicit": ms(explicit, q, k, v, keep), "attend": ms(attend, q, k, v, keep)})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--model", default="minilm", help="minilm, mpnet or a model directory")
    ap.add_argument("--limit", type=int, default=4000, help="Banking77 texts")
    ap.add_argument("--long-limit", type=int, default=48, help="~300-token texts")
    ap.add_argument("--long-tokens", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--batch-tokens", type=int, default=4096)
    ap.add_argument("--compute-dtype", default="auto")
    ap.add_argument("--kernel", action="store_true", help="also time the kernels alone")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    label, model_path = resolve_model_path(args.model)
    fused, stock = encoders(model_path, args.compute_dtype)
    if not fused.fused_attention:
        sys.exit(f"error: featstore's attention does not serve {label}: nothing to compare")
    dtype = fused.compute_dtype_name
    out: dict = {"model": label, "compute_dtype": dtype, "load_start": os.getloadavg()[0],
                 "corpora": {}}
    corpora = {"banking77": list(banking77(args.data, args.limit)["text"]),
               "long": list(long_texts(args.data, fused.tokenizer, args.long_tokens,
                                       args.long_limit)["text"])}
    for name, texts in corpora.items():
        print(f"[{name}] {len(texts)} texts, {args.rounds} rounds", file=sys.stderr, flush=True)
        out["corpora"][name] = compare(fused, stock, texts, args.rounds, args.batch_tokens)
    if args.kernel:
        cfg = fused.config
        heads = cfg.num_attention_heads
        out["kernel"] = kernel_table(heads, cfg.hidden_size // heads,
                                     fused.compute_dtype or torch.float32)
    out["load_end"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"{label}, compute dtype {dtype}, torch runtime; load average {out['load_start']:.2f}"
          f" at start, {out['load_end']:.2f} at end")
    for name, r in out["corpora"].items():
        m = r["median"]
        print(f"\n{name}: {r['texts']} texts, {r['tokens']} tokens; texts/s, median of "
              f"{len(r['runs']['stock'])} rounds")
        print(f"  stock attention     {m['stock']:8.1f}   {r['runs']['stock']}")
        print(f"  featstore attention {m['featstore']:8.1f}   {r['runs']['featstore']}")
        print(f"  ratio {r['ratio']:.2f}x; featstore faster in {r['rounds_won']} of "
              f"{len(r['runs']['stock'])} rounds")
    if args.kernel:
        print("\nkernels alone, ms per 4,096-token batch (median of 11)")
        print("  seq  fused kernel  explicit  attend")
        for row in out["kernel"]:
            print(f"  {row['seq']:>3}  {row['fused_kernel']:>12}  {row['explicit']:>8}  "
                  f"{row['attend']:>6}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
