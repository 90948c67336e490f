"""Would int8 pay as a compute dtype? Dynamic int8 quantization of the default encoder's linear
layers (torch.ao `quantize_dynamic`, per-tensor activations) against the float32 encoder, side
by side in one run: forward time on long texts and, per stored feature and layer, the largest
error relative to the layer's largest value and the lowest cosine to the float32 vector.

featstore does not offer int8: on the machine this ran on it was 1.5x faster but moved the
top layer's mean vectors to a cosine as low as 0.84 (docs/SCALING.md).

    python bench/int8_check.py --data ../shared/data [--texts 40]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from featurize_vs_st import DATA, long_texts  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--texts", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    from torch.ao.quantization import quantize_dynamic
    from transformers import AutoModel

    from featstore.featurize.encoder import Encoder

    torch.set_num_threads(args.threads)
    fp32 = Encoder(None, compute_dtype="float32")
    texts = long_texts(args.data, fp32.tokenizer, 300, args.texts).text.tolist()
    ids = fp32.tokenizer(texts, truncation=True, max_length=fp32.max_length)["input_ids"]
    int8 = Encoder(None, compute_dtype="float32")
    with warnings.catch_warnings():  # torch marks torch.ao quantization deprecated
        warnings.simplefilter("ignore")
        int8.model = quantize_dynamic(AutoModel.from_pretrained(int8.source).eval(),
                                      {torch.nn.Linear}, dtype=torch.qint8)

    def run(enc: Encoder) -> tuple[float, list[dict]]:
        enc.forward(ids[:2])  # warm-up
        t = time.perf_counter()
        outs = [enc.forward(ids[i:i + 8])[0] for i in range(0, len(ids), 8)]
        return time.perf_counter() - t, outs

    t32, o32 = run(fp32)
    t8, o8 = run(int8)
    print(f"{len(texts)} texts, {sum(map(len, ids))} tokens: float32 {t32:.2f} s, int8 "
          f"{t8:.2f} s -> int8 {t32 / t8:.2f}x faster")
    for k in o32[0]:
        a = np.concatenate([o[k] for o in o32]).astype(np.float64)
        b = np.concatenate([o[k] for o in o8]).astype(np.float64)
        if a.ndim != 3:
            continue
        rel = np.abs(a - b).max(axis=(0, 2)) / np.abs(a).max(axis=(0, 2))
        cos = ((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
                                  + 1e-12)).min(axis=0)
        print(f"  {k:5s} max error / layer max by layer {np.round(rel, 3).tolist()}")
        print(f"  {k:5s} lowest cosine by layer        {np.round(cos, 3).tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
