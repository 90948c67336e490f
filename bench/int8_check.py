"""Would int8 pay as a compute dtype? Two ways of making the encoder int8, each against what
featurize runs, side by side in one run, with the error per stored feature and layer (the largest
|difference| relative to the layer's largest value, and the lowest cosine) against float32:

  torch-dynamic    torch.ao `quantize_dynamic` of the linear layers (per-tensor activations)
                   against the float32 encoder, on long texts.
  openvino-static  an OpenVINO graph of the encoder with the reductions featurize stores of
                   every layer (CLS, mean, max), quantized by NNCF (transformer preset:
                   SmoothQuant, static ranges measured on --calibration texts, each alone),
                   against the same graph compiled in bf16 and featurize's own torch bf16
                   encoder, in alternating rounds over the same token-budget batches of
                   Banking77 texts that are not calibration rows; then the texts whose vectors
                   moved most.

featstore offers no int8 compute dtype: the figures (docs/SCALING.md) show the first moving the
top layer's mean vectors to a cosine of 0.84, and the second faster in-process on a base-size
encoder but not as a whole process, while one text in 1,500 lost its middle layers' CLS vectors
(cosine -0.03 to float32, all-mpnet-base-v2).

    python bench/int8_check.py --data ../shared/data [--method torch-dynamic] [--texts 40]
    python bench/int8_check.py --method openvino-static --model mpnet [--texts 1500]
        [--calibration generic|banking77] [--keep-float REGEX] [--rounds 4]
        (openvino-static needs nncf: pip install nncf)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from featurize_vs_st import (  # noqa: E402
    DATA,
    banking77,
    cpu_name,
    long_texts,
    resolve_model_path,
)

FEATURES = ["cls", "mean", "max"]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The cosine of each [row, layer] vector of `b` to `a`'s."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)


def report(reference: dict[str, np.ndarray], other: dict[str, np.ndarray], label: str) -> None:
    """Per stored feature, the error and the lowest cosine of each layer against float32."""
    for k, a in reference.items():
        if a.ndim != 3:
            continue
        a, b = a.astype(np.float64), other[k].astype(np.float64)
        rel = np.abs(a - b).max(axis=(0, 2)) / np.abs(a).max(axis=(0, 2))
        cos = cosines(a, b).min(axis=0)
        print(f"  {label} {k:5s} max error / layer max by layer {np.round(rel, 3).tolist()}")
        print(f"  {label} {k:5s} lowest cosine by layer        {np.round(cos, 3).tolist()}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--method", choices=("torch-dynamic", "openvino-static"),
                    default="torch-dynamic")
    ap.add_argument("--model", default="minilm",
                    help="minilm (bundled), mpnet (bench/models.py) or a model directory")
    ap.add_argument("--texts", type=int, default=None,
                    help="texts to time (default: 40 long ones, 1,000 Banking77 ones)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--calibration", choices=("banking77", "generic"), default="generic",
                    help="openvino-static's calibration texts: 300 Banking77 training texts "
                         "(never among the texts checked), or the fixed varied ones of "
                         "bench/calibration_texts.py")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep-float", default=None, metavar="REGEX",
                    help="openvino-static: leave the graph nodes whose names match in bf16 "
                         r"(NNCF's ignored scope), e.g. 'layer\.4\.output\.dense'")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    label, path = resolve_model_path(args.model)
    print(f"{label}, {cpu_name()}, {args.threads} threads")
    if args.method == "torch-dynamic":
        return torch_dynamic(path, args)
    return openvino_static(path, args)


def torch_dynamic(path: str, args: argparse.Namespace) -> int:
    import torch
    from torch.ao.quantization import quantize_dynamic
    from transformers import AutoModel

    from featstore.featurize.encoder import Encoder

    fp32 = Encoder(path, compute_dtype="float32")
    texts = long_texts(args.data, fp32.tokenizer, 300, args.texts or 40).text.tolist()
    ids = fp32.tokenizer(texts, truncation=True, max_length=fp32.max_length)["input_ids"]
    int8 = Encoder(path, compute_dtype="float32")
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
    report({k: np.concatenate([o[k] for o in o32]) for k in o32[0]},
           {k: np.concatenate([o[k] for o in o8]) for k in o8[0]}, "int8")
    return 0


def all_layers(model):  # noqa: ANN001, ANN201
    """The encoder and the reductions featurize stores of every hidden state (CLS, masked mean
    and max, as featstore's OpenVINO runtime traces them), as one traceable module."""
    import torch

    class AllLayers(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):  # noqa: ANN001, ANN202
            states = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                output_hidden_states=True).hidden_states
            h = torch.stack(states, dim=1)  # [batch, layers, tokens, hidden]
            m = attention_mask[:, None, :, None].to(h.dtype)
            return (h[:, :, 0], (h * m).sum(2) / m.sum(2).clamp(min=1.0),
                    h.masked_fill(m == 0, float("-inf")).amax(2))

    return AllLayers().eval()


def openvino_static(path: str, args: argparse.Namespace) -> int:
    import nncf
    import openvino as ov
    import torch
    from transformers import AutoModel

    from featstore.featurize.batching import token_budget_batches
    from featstore.featurize.encoder import Encoder

    ref = Encoder(path, compute_dtype="float32", runtime="torch", features=FEATURES)
    bf16 = Encoder(path, compute_dtype="bfloat16", runtime="torch", features=FEATURES)
    df = banking77(args.data, None)
    calib = df[df.split == "train"].sample(300, random_state=0)
    if args.calibration == "banking77":
        train = calib.text.tolist()
    else:
        from calibration_texts import samples

        train = samples()
    rest = df.drop(index=calib.index).text.drop_duplicates()
    texts = rest.sample(args.texts or 1000, random_state=0).tolist()
    ids = ref.tokenizer(texts, truncation=True, max_length=ref.max_length)["input_ids"]
    lengths = np.array([len(x) for x in ids])
    plan = list(token_budget_batches(lengths, 4096))
    batches = [[ids[i] for i in b] for b in plan]
    ordered = [texts[i] for b in plan for i in b]  # the rows' order in every pass's output

    def pad(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        out = ref.tokenizer.pad({"input_ids": rows}, return_tensors="np")
        return out["input_ids"].astype(np.int64), out["attention_mask"].astype(np.int64)

    stock = AutoModel.from_pretrained(ref.source).eval()  # as loaded: no featstore swaps
    graph = all_layers(stock)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ir = ov.convert_model(graph, example_input=tuple(map(torch.from_numpy,
                                                            pad(batches[0][:4]))))
    names = [p.get_any_name() for p in ir.inputs]
    calib_ids = ref.tokenizer(train, truncation=True, max_length=ref.max_length)["input_ids"]
    batches_c = [dict(zip(names, pad([row]), strict=True)) for row in calib_ids]
    t = time.perf_counter()
    ignored = (nncf.IgnoredScope(patterns=[f".*{args.keep_float}.*"], validate=False)
               if args.keep_float else None)
    q = nncf.quantize(ir, nncf.Dataset(batches_c), model_type=nncf.ModelType.TRANSFORMER,
                      subset_size=len(batches_c), **({"ignored_scope": ignored} if ignored else {}))
    quantize_s = time.perf_counter() - t
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": args.threads, "PERFORMANCE_HINT": "LATENCY"}
    compiled = {"openvino int8": core.compile_model(q, "CPU", config),
                "openvino bf16": core.compile_model(
                    ir, "CPU", {**config, "INFERENCE_PRECISION_HINT": "bf16"})}

    def ov_pass(c) -> dict[str, np.ndarray]:  # noqa: ANN001
        outs = [c(dict(zip(names, pad(b), strict=True))) for b in batches]
        return {f: np.concatenate([np.asarray(o[i]) for o in outs]) for i, f in
                enumerate(FEATURES)}

    def torch_pass(enc: Encoder) -> dict[str, np.ndarray]:
        outs = [enc.forward(b)[0] for b in batches]
        return {f: np.concatenate([o[f] for o in outs]).astype(np.float32) for f in FEATURES}

    runs = {**{k: (lambda c=c: ov_pass(c)) for k, c in compiled.items()},
            "featurize torch bf16": lambda: torch_pass(bf16)}
    vectors = {k: run() for k, run in runs.items()}  # also the warm-up pass
    speed: dict[str, list[float]] = {k: [] for k in runs}
    keys = list(runs)
    for r in range(args.rounds):
        for k in keys if r % 2 == 0 else keys[::-1]:
            t = time.perf_counter()
            runs[k]()
            speed[k].append(len(texts) / (time.perf_counter() - t))
    reference = torch_pass(ref)
    print(f"{len(texts)} Banking77 texts ({int(lengths.sum())} tokens), every layer's "
          f"cls/mean/max; quantized in {quantize_s:.1f} s on {len(train)} {args.calibration} "
          "calibration texts")
    base = statistics.median(speed["featurize torch bf16"])
    for k, v in speed.items():
        print(f"  {k:22s} {statistics.median(v):8.1f} texts/s (median of {len(v)}: "
              f"{', '.join(f'{x:.0f}' for x in v)}) = {statistics.median(v) / base:.2f}x "
              "featurize")
    for k in ("openvino int8", "openvino bf16"):
        report(reference, vectors[k], k)
    for f in FEATURES:
        cos = cosines(reference[f], vectors["openvino int8"][f])
        low = cos.min(1)
        print(f"  openvino int8 {f}: texts with a layer below cosine 0.9: "
              f"{int((low < 0.9).sum())} of {len(low)}; lowest:")
        for i in np.argsort(low)[:3]:
            print(f"    {low[i]:.3f} at layer {int(cos[i].argmin())}: {ordered[i][:70]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
