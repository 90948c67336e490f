"""One sentence-transformers configuration, timed in its own process (run by
bench/featurize_vs_st.py, with the interpreter that has sentence-transformers' extras).

Prints one JSON line: model load seconds, in-process `encode()` seconds after a warm-up on 64
texts, peak RSS; with --vectors OUT.npy it also saves the embeddings (for the head check).

  python bench/st_peer.py MODEL_DIR CONFIG TEXTS.csv THREADS [MAX_SEQ_LENGTH] [--vectors OUT]

CONFIG: fp32 (torch float32), bf16 (torch, bfloat16 weights), onnx (float32), onnx-int8 (ONNX
dynamic int8 quantization for AVX512-VNNI, exported here), openvino (OpenVINO with its default
precision: bf16 where the CPU has the units), openvino-f32 (OpenVINO forced to float32).
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path


def model(path: str, config: str, tmp: Path):  # noqa: ANN201
    import torch
    from sentence_transformers import SentenceTransformer

    if config == "fp32":
        return SentenceTransformer(path, device="cpu")
    if config == "bf16":
        return SentenceTransformer(path, device="cpu",
                                   model_kwargs={"torch_dtype": torch.bfloat16})
    if config == "onnx":
        return SentenceTransformer(path, device="cpu", backend="onnx")
    if config == "onnx-int8":
        from sentence_transformers import export_dynamic_quantized_onnx_model

        base = SentenceTransformer(path, device="cpu", backend="onnx")
        out = tmp / "onnx-model"
        base.save_pretrained(str(out))
        export_dynamic_quantized_onnx_model(base, "avx512_vnni", str(out))
        return SentenceTransformer(str(out), device="cpu", backend="onnx", model_kwargs={
            "file_name": "onnx/model_qint8_avx512_vnni.onnx"})
    if config == "openvino":
        return SentenceTransformer(path, device="cpu", backend="openvino")
    if config == "openvino-f32":
        return SentenceTransformer(path, device="cpu", backend="openvino", model_kwargs={
            "ov_config": {"INFERENCE_PRECISION_HINT": "f32"}})
    raise SystemExit(f"error: unknown config {config!r}")


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    vectors = sys.argv[sys.argv.index("--vectors") + 1] if "--vectors" in sys.argv else None
    if vectors:
        args.remove(vectors)
    path, config, csv, threads = args[:4]
    msl = int(args[4]) if len(args) > 4 and args[4] != "None" else None
    import pandas as pd
    import torch

    torch.set_num_threads(int(threads))
    texts = pd.read_csv(csv)["text"].astype(str).tolist()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        m = model(path, config, Path(tmp))
        if msl:
            m.max_seq_length = msl
        load = time.perf_counter() - t0
        m.encode(texts[:64])
        t0 = time.perf_counter()
        emb = m.encode(texts)
        encode = time.perf_counter() - t0
    if vectors:
        import numpy as np

        np.save(vectors, np.asarray(emb, dtype=np.float32))
    print(json.dumps({"load": round(load, 3), "encode": round(encode, 3),
                      "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                      1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
