"""Commands over the store and the encoder pass: featurize, info, verify, repair."""

from __future__ import annotations

import argparse
import json
import sys

from featstore.cli.arguments import add_store_arg
from featstore.cli.text_output import size
from featstore.store import FeatstoreError


def register_store_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("featurize", help="run a frozen encoder over a corpus into the store",
                       description="Run a frozen encoder once over a corpus; store per-layer CLS, "
                       "mean and max vectors (and LASER vectors) per unique text.")
    p.add_argument("corpus", metavar="CORPUS", help=".csv, .tsv, .parquet or .jsonl")
    add_store_arg(p)
    p.add_argument("--model", default=None,
                   help="Hugging Face id or local dir (default: bundled all-MiniLM-L6-v2)")
    p.add_argument("--name", default=None, help="dataset name (default: the file's stem)")
    p.add_argument("--text-col", default=None, help="text column (default: text, sentence, "
                   "or the only string column)")
    p.add_argument("--max-length", type=int, default=None, help="tokens per window")
    p.add_argument("--stride", type=int, default=None,
                   help="tokens shared by consecutive windows of a long text")
    p.add_argument("--truncate", action="store_true",
                   help="cut texts at --max-length instead of windowing them")
    p.add_argument("--layers", default="all", help="'all' or a list like 0,3,-1")
    p.add_argument("--features", default=None,
                   help="comma list of cls,mean,max,pooler (default: all the model has)")
    p.add_argument("--tokens", action="store_true",
                   help="also store token-level states (for attention pooling)")
    p.add_argument("--laser", action=argparse.BooleanOptionalAction, default=True,
                   help="also store LASER sentence vectors when LASER models are found")
    p.add_argument("--laser-dir", default=None, help="directory holding LASER's model files")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--batch-tokens", type=int, default=None,
                   help="padded tokens per batch (default 4096 on CPU, 16384 on GPU)")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"],
                   help="storage precision")
    p.add_argument("--compute-dtype", default="auto",
                   choices=["auto", "float32", "float16", "bfloat16"],
                   help="encoder precision (auto: float16 autocast on GPU, float32 on CPU)")
    p.add_argument("--shard-rows", type=int, default=2048,
                   help="texts per committed shard: what a killed run can lose at most")
    p.add_argument("--strict", action="store_true", help="empty or missing texts are an error")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow the model repository's own code to run")
    p.add_argument("--wait", action="store_true",
                   help="wait for another writer to finish instead of failing")
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local: this process; ray: an actor pool on a Ray cluster (the store "
                   "must be on a filesystem every node sees)")
    p.add_argument("--address", default=None,
                   help="Ray cluster address (default: $RAY_ADDRESS, else a local cluster)")
    p.add_argument("--workers", type=int, default=None,
                   help="Ray actors, one encoder each (default: one per GPU, else per CPU)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0,
                   help="GPUs per Ray actor; fractions share a GPU (default 0: CPU)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_featurize)

    p = sub.add_parser("info", help="list encoders, datasets and sizes")
    add_store_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("verify", help="check checksums and index/shard consistency")
    add_store_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("repair", help="drop damaged shards and tables so featurize recomputes")
    add_store_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_repair)


def _positive(value: int | None, flag: str) -> None:
    if value is not None and value <= 0:
        raise FeatstoreError(f"{flag} must be a positive integer, not {value}")


def cmd_featurize(args: argparse.Namespace) -> int:
    from featstore.featurize.options import FeaturizeOptions
    from featstore.services.featurizing import featurize_file

    for value, flag in ((args.max_length, "--max-length"), (args.batch_tokens, "--batch-tokens"),
                        (args.shard_rows, "--shard-rows"), (args.workers, "--workers")):
        _positive(value, flag)
    if args.engine != "ray" and (args.address or args.workers or args.gpus_per_worker):
        raise FeatstoreError("--address, --workers and --gpus-per-worker need --engine ray")
    features = tuple(f.strip() for f in args.features.split(",") if f.strip()) \
        if args.features else None
    options = FeaturizeOptions(
        model=args.model, max_length=args.max_length, stride=args.stride,
        truncate=args.truncate, layers=args.layers, features=features, tokens=args.tokens,
        laser=args.laser, laser_dir=args.laser_dir, device=args.device,
        batch_tokens=args.batch_tokens, dtype=args.dtype, compute_dtype=args.compute_dtype,
        strict=args.strict, trust_remote_code=args.trust_remote_code, wait=args.wait,
        shard_rows=args.shard_rows, engine=args.engine, address=args.address,
        workers=args.workers, gpus_per_worker=args.gpus_per_worker)
    summary = featurize_file(args.corpus, args.store, options, name=args.name,
                             text_col=args.text_col, progress=not args.no_progress).to_dict()
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(_summary_text(summary))
    return 0


def _summary_text(s: dict) -> str:
    return "\n".join([
        f"store      {s['store']}",
        f"dataset    {s['dataset']} ({s['dataset_rows']} rows)",
        f"encoder    {s['encoder_id']} ({s['layers']} layers: {', '.join(s['features'])})",
        f"rows read  {s['rows_read']}  (skipped empty: {s['skipped']})",
        f"unique     {s['unique']}  new: {s['new']}  already stored: {s['cached']}  "
        f"windows: {s['windows']}",
        "laser      " + (f"{s['laser_encoder_id']} new: {s['laser_new']}"
                          if s["laser_encoder_id"] else "off"),
        f"written    {size(s['bytes_written'])} in {s['seconds']:.1f} s, encoder pass "
        f"{s['pass_seconds']:.1f} s "
        f"({s['texts_per_s']:.1f} texts/s, {s['mb_per_s']:.1f} MB/s)"
        + (f" on Ray, {s['workers']} workers" if s["engine"] == "ray" else ""),
    ])


def cmd_info(args: argparse.Namespace) -> int:
    from featstore.store import open_store

    store = open_store(args.store)
    encoders, datasets = store.encoders(), store.datasets()
    if args.json:
        print(json.dumps({"store": str(store.root), "generation": store.manifest.generation,
                          "encoders": encoders, "datasets": datasets}, indent=1))
        return 0
    print(f"store {store.root} (generation {store.manifest.generation})")
    print("encoders:")
    for e in encoders or [{}]:
        if not e:
            print("  (none)")
            continue
        fp = e["fingerprint"]
        what = (f"{fp.get('model')} layers={len(fp.get('layers', []))} hidden={fp.get('hidden')}"
                if fp.get("kind") == "encoder" else f"{fp.get('kind')} dim={fp.get('dim')}")
        print(f"  {e['id']:<40} {what}  features={','.join(e['features'])}  "
              f"rows={e['rows']}  shards={e['shards']}  {size(e['bytes'])}")
    print("datasets:")
    for d in datasets or [{}]:
        if not d:
            print("  (none)")
            continue
        print(f"  {d['name']:<24} rows={d['rows']}  skipped={d['skipped']}  "
              f"encoders={','.join(d['encoders'])}  {size(d['bytes'])}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from featstore.store import open_store

    store = open_store(args.store)
    problems = store.verify()
    if args.json:
        print(json.dumps({"store": str(store.root), "ok": not problems, "problems": problems}))
    elif problems:
        for p in problems:
            print(f"damaged: {p}", file=sys.stderr)
    else:
        shards = sum(e["shards"] for e in store.encoders())
        print(f"ok: {store.root} ({shards} shards, {len(store.datasets())} datasets verified)")
    return 1 if problems else 0


def cmd_repair(args: argparse.Namespace) -> int:
    from featstore.store import StoreWriter, default_store_path, open_store

    root = default_store_path(args.store)
    open_store(root)
    with StoreWriter(root) as writer:
        dropped = writer.repair()
    if args.json:
        print(json.dumps(dropped))
    else:
        n = sum(len(v) for v in dropped["shards"].values())
        print(f"repaired {root}: dropped {n} damaged shard(s) and "
              f"{len(dropped['datasets'])} dataset table(s); re-run featurize to recompute")
    return 0
