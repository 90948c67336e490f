"""float32 against other compute dtypes (bfloat16 by default), side by side in one run, on an
encoder and Banking77: what the consistency contract (featstore/featurize/precision.py) states,
measured.

  speed        `featstore featurize` of all 13,083 Banking77 texts as a whole process, once per
               compute dtype (all layers x cls/mean/max (+ pooler), float16, LASER off): wall
               time and the encoder pass's texts/s.
  reference    a sample of texts run one at a time, unpadded, through the stock Hugging Face
               model in float32 (no featstore code): each dtype's stored vectors against it.
               `--long N` adds N long texts (SST-2 sentences joined to ~300 tokens, within the
               encoder's window), featurized into each dtype's store, to the sample.
  recompute    the same sample featurized again into a fresh store in other batches (another
               order, a small token budget): how far a recomputed vector is from the stored one,
               per dtype, and between the two dtypes (a store extended on another CPU kind).
  heads        the strong mean-max MLP recipe (5 seeds) trained on each dtype's train rows,
               scored on the test rows of that dtype and of float32 (float32's head: of the
               next dtype): accuracy, within 0.3 points of float32's (the rule a compute dtype
               is judged by), and the share of test texts whose predicted label is the same
               when the test vectors were computed in the other dtype (target >= 99.5%).

bfloat16 is forced where the CPU only emulates it (then slower than float32); the CPU's flags
and the load average are printed, since figures hold only for the machine that printed them.

  python bench/precision.py --data ../shared/data [--limit N] [--sample 500] [--no-heads]
      [--model minilm|mpnet|DIR] [--dtypes float32,bfloat16] [--long N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DTYPES = ["float32", "bfloat16"]  # --dtypes replaces it; float32 always comes first
MODEL: list[str] = []  # --model's directory, set once by main
FEATURES = ("cls", "mean", "max")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cpu_flags() -> list[str]:
    from featstore.featurize.cpu_features import NATIVE_BF16_FLAGS, _cpuinfo_flags

    flags = _cpuinfo_flags()
    return sorted(f for f in flags if f in (*NATIVE_BF16_FLAGS, "avx2", "avx512f", "amx_tile"))


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def banking77(data: Path, limit: int | None) -> pd.DataFrame:
    parts = []
    for split in ("train", "test"):
        df = pd.read_csv(data / "banking77" / f"{split}.csv").rename(columns={"category":
                                                                              "label"})
        parts.append(df.assign(split=split))
    df = pd.concat(parts, ignore_index=True)
    if limit:
        df = pd.concat([g.sample(n=max(1, round(limit * len(g) / len(df))), random_state=0)
                        for _, g in df.groupby("split")], ignore_index=True)
    return df


def featurize_process(corpus: Path, store: Path, dtype: str) -> dict:
    cmd = [sys.executable, "-m", "featstore", "featurize", "--store", str(store), "--no-laser",
           "--no-progress", "--json", "--name", "b77", "--compute-dtype", dtype,
           "--model", MODEL[0], str(corpus)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    summary = json.loads(done.stdout)
    return {"wall_s": round(wall, 2), "texts": summary["new"],
            "texts_per_s_process": round(summary["new"] / wall, 1),
            "texts_per_s_pass": summary["texts_per_s"],
            "compute_dtypes": summary["compute_dtypes"]}


def reference(texts: list[str]) -> dict[str, np.ndarray]:
    """The stock model in float32, one text at a time, no padding."""
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = MODEL[0]
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval().float()
    out: dict[str, list[np.ndarray]] = {f: [] for f in FEATURES}
    with torch.inference_mode():
        for text in texts:
            ids = tok(text, return_tensors="pt", truncation=True, max_length=512)
            hs = model(**ids, output_hidden_states=True).hidden_states
            out["cls"].append(np.stack([h[0, 0].numpy() for h in hs]))
            out["mean"].append(np.stack([h[0].mean(0).numpy() for h in hs]))
            out["max"].append(np.stack([h[0].amax(0).numpy() for h in hs]))
    return {k: np.stack(v) for k, v in out.items()}


def stored(store_dir: Path, texts: list[str]) -> dict[str, np.ndarray]:
    from featstore.store import open_store

    store = open_store(store_dir)
    return {f: store.features(texts, f, None).astype(np.float32) for f in FEATURES}


def worst(devs: dict) -> dict:
    return {"max_error": max(d.max_error for d in devs.values()),
            "min_cosine": min(d.min_cosine for d in devs.values()),
            "per_feature": {k: {"max_error": round(d.max_error, 6),
                                "min_cosine": round(d.min_cosine, 7)}
                            for k, d in devs.items()}}


def long_sample(data: Path, n: int) -> list[str]:
    """`n` texts of ~300 tokens that fit the encoder's window whole (so the unpadded reference
    sees what featurize sees, with no windows)."""
    from featurize_vs_st import long_texts

    from featstore.featurize.encoder import Encoder

    enc = Encoder(MODEL[0], device="cpu", compute_dtype="float32", runtime="torch")
    texts = long_texts(data, enc.tokenizer, 300, 4 * n).text.tolist()
    fits = [t for t in texts if len(enc.tokenizer(t)["input_ids"]) <= enc.max_length]
    return fits[:n]


def consistency(stores: dict[str, Path], sample: list[str], tmp: Path,
                long: list[str] | None = None) -> dict:
    from featstore.featurize.driver import featurize_texts
    from featstore.featurize.options import FeaturizeOptions
    from featstore.featurize.precision import BETWEEN_RUNS, TO_REFERENCE, between_runs, deviation

    if long:
        for d in DTYPES:
            log(f"[long] {len(long)} long texts into the {d} store")
            featurize_texts(long, stores[d], FeaturizeOptions(
                model=MODEL[0], device="cpu", laser=False, compute_dtype=d))
        sample = [*sample, *long]

    log(f"[reference] stock float32 model, {len(sample)} texts one at a time, unpadded")
    ref = reference(sample)
    first = {d: stored(stores[d], sample) for d in DTYPES}
    out: dict = {"sample": len(sample), "long": len(long or [])}
    for d in DTYPES:
        devs = {f: deviation(ref[f], first[d][f]) for f in FEATURES}
        w = worst(devs)
        w["bound"] = vars(TO_REFERENCE[d])
        w["holds"] = all(x.within(TO_REFERENCE[d]) for x in devs.values())
        out[f"reference_{d}"] = w
        log(f"[recompute] {d}: the sample again, reversed, 256-token batches")
        again = tmp / f"again-{d}"
        featurize_texts(sample[::-1], again, FeaturizeOptions(
            model=MODEL[0], device="cpu", laser=False, compute_dtype=d, batch_tokens=256,
            shard_rows=97))
        second = stored(again, sample)
        devs = {f: deviation(first[d][f], second[f]) for f in FEATURES}
        w = worst(devs)
        w["bound"] = vars(BETWEEN_RUNS[d])
        w["holds"] = all(x.within(BETWEEN_RUNS[d]) for x in devs.values())
        w["identical_rows"] = round(float(np.mean([
            np.array_equal(first[d]["mean"][i], second["mean"][i])
            for i in range(len(sample))])), 4)
        out[f"recompute_{d}"] = w
    for d in DTYPES[1:]:
        devs = {f: deviation(first["float32"][f], first[d][f]) for f in FEATURES}
        w = worst(devs)
        bound = between_runs("float32", d)
        w["bound"] = vars(bound)
        w["holds"] = all(x.within(bound) for x in devs.values())
        out[f"float32_vs_{d}"] = w
    return out


def heads(stores: dict[str, Path]) -> dict:
    from featstore.heads import HeadClassifier
    from featstore.selection.recipes import STRONG
    from featstore.store import open_store

    opened = {d: open_store(stores[d]) for d in DTYPES}
    rows = opened["float32"].dataset("b77")
    train, test = rows[rows.split == "train"], rows[rows.split == "test"]
    test = test[test.label.isin(set(train.label))]
    out: dict = {"train_rows": len(train), "test_rows": len(test)}
    for d in DTYPES:
        log(f"[heads] mean-max MLP x5 seeds on {d} train rows")
        t0 = time.perf_counter()
        clf = HeadClassifier(**STRONG, seed=0).fit(opened[d], train)
        fit_s = time.perf_counter() - t0
        same = clf.predict(opened[d], test)
        other_d = _other(d)
        other = clf.predict(opened[other_d], test)
        gold = test.label.to_numpy()
        out[f"trained_on_{d}"] = {
            "fit_s": round(fit_s, 1),
            f"accuracy_on_{d}_test": round(100 * float(np.mean(same == gold)), 2),
            f"accuracy_on_{other_d}_test": round(100 * float(np.mean(other == gold)), 2),
            "same_label_percent": round(100 * float(np.mean(same == other)), 2),
            "changed_labels": int(np.sum(same != other))}
    return out


def _other(d: str) -> str:
    """The dtype a head trained on `d` is also scored on: float32, or for float32 the next."""
    return DTYPES[1] if d == "float32" else "float32"


def print_report(r: dict) -> None:
    print(f"cpu      {r['cpu']}  flags {' '.join(r['flags'])}")
    print(f"load     {r['load_start']} -> {r['load_end']}")
    print(f"corpus   Banking77, {r['texts']} texts; encoder {r['model']}")
    for d in DTYPES:
        s = r["speed"][d]
        print(f"speed    {d:<9} featurize whole process {s['wall_s']:.1f} s = "
              f"{s['texts_per_s_process']} texts/s (encoder pass {s['texts_per_s_pass']} "
              f"texts/s)")
    f32 = r["speed"]["float32"]
    for d in DTYPES[1:]:
        ratio = r["speed"][d]["texts_per_s_process"] / f32["texts_per_s_process"]
        print(f"speed    {d} / float32 = {ratio:.2f}x (whole process)")
    c = r["consistency"]
    for key, label in ([(f"reference_{d}", f"{d} vs reference") for d in DTYPES]
                       + [(f"recompute_{d}", f"{d} recomputed") for d in DTYPES]
                       + [(f"float32_vs_{d}", f"float32 vs {d}") for d in DTYPES[1:]]):
        w = c[key]
        extra = (f", identical rows {100 * w['identical_rows']:.1f}%"
                 if "identical_rows" in w else "")
        print(f"contract {label:<22} max error {100 * w['max_error']:.3f}% (bound "
              f"{100 * w['bound']['max_error']:.2f}%), lowest cosine {w['min_cosine']:.6f} "
              f"(bound {w['bound']['min_cosine']}){extra}: "
              f"{'holds' if w['holds'] else 'BROKEN'}")
    h = r.get("heads")
    if h:
        base = h["trained_on_float32"]["accuracy_on_float32_test"]
        for d in DTYPES:
            t = h[f"trained_on_{d}"]
            other = _other(d)
            own = t[f"accuracy_on_{d}_test"]
            rule = (f"; {own - base:+.2f} points against float32 (rule: within 0.3: "
                    f"{'holds' if abs(own - base) <= 0.3 else 'BROKEN'})" if d != "float32"
                    else "")
            print(f"heads    trained on {d:<9} test {d} {own:.2f}, "
                  f"test {other} {t[f'accuracy_on_{other}_test']:.2f}; same label "
                  f"{t['same_label_percent']:.2f}% ({t['changed_labels']} of {h['test_rows']} "
                  f"changed; target >= 99.5%){rule}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--limit", type=int, default=None, help="Banking77 rows (default: all)")
    ap.add_argument("--sample", type=int, default=500,
                    help="texts checked against the reference and recomputed")
    ap.add_argument("--no-heads", action="store_true")
    ap.add_argument("--model", default="minilm",
                    help="minilm (bundled), mpnet (bench/models.py) or a model directory")
    ap.add_argument("--dtypes", default="float32,bfloat16",
                    help="compute dtypes to compare, float32 among them")
    ap.add_argument("--long", type=int, default=0,
                    help="long texts (~300 tokens) added to the reference sample")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    wanted = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    from featstore.featurize.precision import TO_REFERENCE

    if "float32" not in wanted or len(wanted) < 2:
        ap.error("--dtypes needs float32 and at least one other")
    if set(wanted) - set(TO_REFERENCE):
        ap.error(f"--dtypes: featstore states a contract for {', '.join(TO_REFERENCE)} only")
    DTYPES[:] = ["float32", *[d for d in wanted if d != "float32"]]
    from featurize_vs_st import resolve_model_path

    label, path = resolve_model_path(args.model)
    MODEL[:] = [path]
    result: dict = {"cpu": cpu_name(), "flags": cpu_flags(), "model": label,
                    "dtypes": list(DTYPES), "load_start": round(os.getloadavg()[0], 2)}
    df = banking77(args.data, args.limit)
    result["texts"] = len(df)
    with tempfile.TemporaryDirectory(prefix="featstore-precision-") as tmp_name:
        tmp = Path(tmp_name)
        corpus = tmp / "b77.csv"
        df.to_csv(corpus, index=False)
        stores = {d: tmp / f"store-{d}" for d in DTYPES}
        result["speed"] = {}
        for d in DTYPES:
            log(f"[speed] featurize, compute dtype {d}")
            result["speed"][d] = featurize_process(corpus, stores[d], d)
        texts = df.text.drop_duplicates()
        sample = texts.sample(n=min(args.sample, len(texts)), random_state=0).tolist()
        long = long_sample(args.data, args.long) if args.long else None
        result["consistency"] = consistency(stores, sample, tmp, long)
        if not args.no_heads:
            result["heads"] = heads(stores)
    result["load_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
