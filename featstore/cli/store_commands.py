"""Commands over the store and the encoder pass: featurize, import-vectors, info, verify,
repair."""

from __future__ import annotations

import argparse
import json
import sys

from featstore.cli.flags import add_flags, featurize_layers, text_value
from featstore.cli.text_output import size
from featstore.store import FeatstoreError


def register_store_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("featurize", help="run a frozen encoder over a corpus into the store",
                       description="Run a frozen encoder once over a corpus; store per-layer CLS, "
                       "mean and max vectors (and LASER vectors) per unique text.")
    # optional to argparse only so that `--layers 4 5 6 CORPUS` parses (see corpus_and_layers)
    p.add_argument("corpus", metavar="CORPUS", type=text_value, nargs="?",
                   help=".csv, .tsv, .parquet or .jsonl")
    add_flags(p, "--store", "--model", "--name", "--text-col", "--max-length", "--stride",
              "--truncate", "--featurize-layers", "--features", "--tokens", "--laser",
              "--laser-dir", "--device", "--batch-tokens", "--dtype", "--compute-dtype",
              "--runtime", "--shard-rows", "--strict", "--pair-cols", "--cross",
              "--trust-remote-code", "--wait", "--engine",
              "--address", "--workers", "--gpus-per-worker", "--replace", "--json",
              "--no-progress")
    p.set_defaults(func=cmd_featurize)

    p = sub.add_parser("import-vectors", help="store vectors made elsewhere (LASER's tools, any "
                       "embedding or numeric features) as a source for --fuse NAME",
                       description="Store per-text vectors from a file as the vector source "
                       "NAME, fused into heads with `fit-head --fuse NAME`. FILE is .parquet, "
                       ".csv or .tsv (a text or _key column; a list column or numeric columns "
                       "v0, v1, ...), .npz (arrays texts or keys, and vectors), or .npy / "
                       "LASER's raw output .raw/.bin with --texts (one text per line).")
    p.add_argument("file", metavar="FILE", type=text_value, help="the vectors file")
    add_flags(p, "--source-name", "--store", "--text-col", "--vector-cols", "--texts", "--fp16",
              "--dim", "--add",
              "--dtype", "--replace", "--strict", "--shard-rows", "--wait", "--json",
              "--no-progress",
              name={"required": True},
              dtype={"default": "float32",
                     "help": "precision the vectors are stored in (default: %(default)s)"},
              text_col={"help": "text column (default: text, sentence, else a _key or key "
                                "column of store keys, else the only string column)"},
              shard_rows={"help": "vectors per shard file; the source is committed whole "
                                  "(default: %(default)s)"},
              replace={"help": "let this file replace the vectors of a source of the same name "
                               "imported from another file"},
              strict={"help": "empty texts, and texts in no dataset of the store, are an error"})
    p.set_defaults(func=cmd_import_vectors)

    for name, func, text in (
            ("info", cmd_info, "list encoders, datasets, heads and sizes"),
            ("verify", cmd_verify, "check every checksum: shards, tables, heads"),
            ("repair", cmd_repair, "drop damaged shards and tables, and say which command "
                                   "restores them")):
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        add_flags(p, "--store", "--json", *(("--wait",) if name == "repair" else ()))
        p.set_defaults(func=func)


def corpus_and_layers(args: argparse.Namespace) -> tuple[str, str | list[int]]:
    """CORPUS and --layers: a corpus written right after `--layers 4 5 6` is read as the last
    value of --layers by argparse, and given back here."""
    values = list(args.layers)
    corpus = args.corpus
    if corpus is None and values and not _is_layer_spec(values[-1]):
        corpus = values.pop()
    if corpus is None:
        raise FeatstoreError("featurize needs a CORPUS file (.csv, .tsv, .parquet or .jsonl)")
    if not values:
        raise FeatstoreError("--layers names no layer")
    try:
        parsed = [featurize_layers(v) for v in values]
    except argparse.ArgumentTypeError as exc:
        raise FeatstoreError(f"--layers {exc}") from None
    if "all" in parsed:
        if len(parsed) > 1:
            raise FeatstoreError("--layers takes 'all' or layer numbers, not both")
        return corpus, "all"
    return corpus, [x for v in parsed for x in v]


def _is_layer_spec(text: str) -> bool:
    try:
        featurize_layers(text)
    except argparse.ArgumentTypeError:
        return False
    return True


def check_featurize(args: argparse.Namespace) -> None:
    """Combinations of featurize flags that cannot mean anything."""
    if args.engine != "ray" and (args.address or args.workers or args.gpus_per_worker):
        raise FeatstoreError("--address, --workers and --gpus-per-worker need --engine ray")
    if args.truncate and args.stride is not None:
        raise FeatstoreError("--stride sets the overlap of windows; with --truncate there are "
                             "none")
    if args.laser is False and args.laser_dir:
        raise FeatstoreError("--laser-dir has no use with --no-laser")
    if args.cross and not args.pair_cols:
        raise FeatstoreError("--cross encodes each pair jointly; name its two columns with "
                             "--pair-cols A B")
    if args.pair_cols and args.text_col:
        raise FeatstoreError("--text-col names one text column; a pair's two are --pair-cols")
    if args.pair_cols and args.strict:
        raise FeatstoreError("--strict refuses empty texts; a pair corpus always refuses them")
    if args.cross and args.engine != "local":
        raise FeatstoreError("--cross encodes pairs on the local engine; drop --engine "
                             f"{args.engine} (the pairs' texts alone can use it)")


def cmd_featurize(args: argparse.Namespace) -> int:
    from featstore.featurize.options import FeaturizeOptions
    from featstore.services.featurizing import featurize_file

    check_featurize(args)
    corpus, layers = corpus_and_layers(args)
    options = FeaturizeOptions(
        model=args.model, max_length=args.max_length, stride=args.stride,
        truncate=args.truncate, layers=layers, features=args.features, tokens=args.tokens,
        laser=args.laser, laser_dir=args.laser_dir, device=args.device,
        batch_tokens=args.batch_tokens, dtype=args.dtype, compute_dtype=args.compute_dtype,
        runtime=args.runtime,
        strict=args.strict, trust_remote_code=args.trust_remote_code, wait=args.wait,
        shard_rows=args.shard_rows, engine=args.engine, address=args.address,
        workers=args.workers, gpus_per_worker=args.gpus_per_worker, cross=args.cross)
    summary = featurize_file(corpus, args.store, options, name=args.name,
                             text_col=args.text_col, progress=not args.no_progress,
                             replace=args.replace, pair_cols=args.pair_cols).to_dict()
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(_summary_text(summary))
    return 0


def _summary_text(s: dict) -> str:
    pairs = []
    if s["pairs"]:
        pairs.append(f"pairs      {s['pairs']} (two texts each; the texts are counted below)")
    if s["cross_encoder_id"]:
        speed = f" ({s['pairs_per_s']:.1f} pairs/s)" if s["cross_new"] else ""
        pairs.append(f"cross      {s['cross_encoder_id']} new: {s['cross_new']}  already "
                     f"stored: {s['cross_cached']}{speed}")
    return "\n".join([
        f"store      {s['store']}",
        f"dataset    {s['dataset']} ({s['dataset_rows']} rows)",
        f"encoder    {s['encoder_id']} ({s['layers']} layers: {', '.join(s['features'])})"
        + (f", computed in {dtype_counts(s['compute_dtypes'])}" if s["compute_dtypes"] else ""),
        f"rows read  {s['rows_read']}  (skipped empty: {s['skipped']})",
        *pairs,
        f"unique     {s['unique']}  new: {s['new']}  already stored: {s['cached']}  "
        f"windows: {s['windows']}",
        "laser      " + (f"{s['laser_encoder_id']} new: {s['laser_new']}"
                          if s["laser_encoder_id"] else "off"),
        f"written    {size(s['bytes_written'])} in {s['seconds']:.1f} s, encoder pass "
        f"{s['pass_seconds']:.1f} s "
        f"({s['texts_per_s']:.1f} texts/s, {s['mb_per_s']:.1f} MB/s)"
        + (f" on Ray, {s['workers']} workers" if s["engine"] == "ray" else ""),
    ])


def cmd_import_vectors(args: argparse.Namespace) -> int:
    from featstore.services.vector_import import import_vectors

    summary = import_vectors(
        args.file, args.store, args.name, text_col=args.text_col, vector_cols=args.vector_cols,
        texts=args.texts, dim=args.dim, dtype=args.dtype, replace=args.replace,
        strict=args.strict, shard_rows=args.shard_rows, wait=args.wait,
        progress=not args.no_progress, fp16=args.fp16, add=args.add).to_dict()
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(_import_text(summary))
    return 0


def _import_text(s: dict) -> str:
    texts = f" with texts {s['texts_file']}" if s["texts_file"] else ""
    done = {"imported": f"written    {size(s['bytes_written'])} in {s['seconds']:.1f} s",
            "replaced": f"written    {size(s['bytes_written'])} in {s['seconds']:.1f} s, "
                        f"replacing {s['replaced']}",
            "restored": f"written    {size(s['bytes_written'])} in {s['seconds']:.1f} s, "
                        "restoring the rows repair dropped",
            "added": f"added      {s['added']} vectors of texts the source lacked "
                     f"({size(s['bytes_written'])} in {s['seconds']:.1f} s); its fingerprint "
                     "is kept, so heads fused with it read them",
            "unchanged": "unchanged  this file is already imported; nothing written"}
    return "\n".join([
        f"store      {s['store']}",
        f"source     {s['name']} = {s['source_id']} ({s['dim']} dims, {s['dtype']})",
        f"file       {s['file']}{texts} (sha256 {s['sha256'][:12]}...)",
        f"read       {s['rows_read']} rows by {s['by']} ({s['column']!r}), vectors from "
        f"{s['vectors_from']}",
        f"vectors    {s['vectors']}  (skipped empty: {s['skipped']}, repeated: "
        f"{s['duplicates']}; in the store's datasets: {s['in_datasets']})",
        done[s["status"]],
        f"use        featstore fit-head --fuse {s['name']}",
    ])


def cmd_info(args: argparse.Namespace) -> int:
    from featstore.store import open_store

    store = open_store(args.store)
    encoders, datasets, indexes = store.sources(), store.datasets(), store.indexes()
    for e in encoders:
        e["compute_dtypes"] = store.rows_by_attr(e["id"], "compute_dtype")
    if args.json:
        print(json.dumps({"store": str(store.root), "generation": store.manifest.generation,
                          "encoders": encoders, "datasets": datasets,
                          **({"indexes": indexes} if indexes else {})}, indent=1))
        return 0
    print(f"store {store.root} (generation {store.manifest.generation})")
    print("encoders:")
    for e in encoders or [{}]:
        if not e:
            print("  (none)")
            continue
        fp, kind = e["fingerprint"], store.encoder_entry(e["id"]).kind
        what = (f"{fp.get('model')} layers={len(fp.get('layers', []))} hidden={fp.get('hidden')}"
                if kind == "encoder" else f"{kind} dim={fp.get('dim')}")
        if kind == "vectors":
            what = (f"vectors {fp.get('name')} dim={fp.get('dim')} "
                    f"file_sha256={str(fp.get('file_sha256'))[:12]}...")
        if kind == "cross":
            what = (f"pairs jointly by {fp.get('encoder', {}).get('model')} "
                    f"layers={len(fp.get('layers', []))} hidden={fp.get('hidden')}"
                    + (f" logits={fp.get('logits')}" if fp.get("logits") else ""))
        recorded = set(e["compute_dtypes"]) - {"unrecorded"}
        computed = dtype_counts(e["compute_dtypes"], sep=",") if recorded else ""
        print(f"  {e['id']:<40} {what}  features={','.join(e['features'])}  "
              f"rows={e['rows']}  shards={e['shards']}  {size(e['bytes'])}  stored={e['dtype']}"
              + (f"  computed={computed}" if computed else ""))
        if len(recorded) > 1:
            print(f"  {'':<40} note: rows computed in {dtype_counts(e['compute_dtypes'])} "
                  "agree within the looser dtype's contract (docs/STORE.md#precision)")
    print("datasets:")
    for d in datasets or [{}]:
        if not d:
            print("  (none)")
            continue
        pairs = f"pairs={'+'.join(d['pair_columns'])}  " if d.get("pair_columns") else ""
        print(f"  {d['name']:<24} rows={d['rows']}  {pairs}skipped={d['skipped']}  "
              f"encoders={','.join(d['encoders'])}  {size(d['bytes'])}")
    if indexes:
        print("search indexes (derived; rebuilt when needed):")
        for x in indexes:
            print(f"  {x['id']:<40} dataset={x['dataset']}  rows={x['rows']}  {x['kind']}  "
                  f"{size(x['bytes'])}")
    return 0


def dtype_counts(counts: dict[str, int], sep: str = " and ") -> str:
    """`bfloat16`, or `float32:300,bfloat16:36` where rows were computed in several dtypes."""
    if len(counts) == 1:
        return next(iter(counts))
    if sep == ",":
        return ",".join(f"{k}:{v}" for k, v in counts.items())
    return sep.join(f"{k} ({v})" for k, v in counts.items())


def cmd_verify(args: argparse.Namespace) -> int:
    from featstore.services.store_checks import check_store
    from featstore.store import default_store_path

    check = check_store(args.store)
    root = default_store_path(args.store)
    if args.json:
        print(json.dumps({"store": str(root), "ok": not check.problems,
                          "problems": check.problems, "notes": check.notes}))
    else:
        for p in check.problems:
            print(f"damaged: {p}", file=sys.stderr)
        for n in check.notes:
            print(f"note: {n}", file=sys.stderr)
        if not check.problems:
            print(f"ok: {root} ({check.shards} shards, {check.datasets} datasets, "
                  f"{check.heads} heads verified)")
    return 1 if check.problems else 0


def cmd_repair(args: argparse.Namespace) -> int:
    from featstore.services.store_checks import repair_store
    from featstore.store import default_store_path

    root = default_store_path(args.store)
    dropped = repair_store(root, wait=args.wait)
    if args.json:
        print(json.dumps(dropped))
    else:
        n = sum(len(v) for v in dropped["shards"].values())
        print(f"repaired {root}: dropped {n} damaged shard(s), "
              f"{len(dropped['datasets'])} dataset table(s) and "
              f"{len(dropped['indexes'])} search index(es)"
              + ("; to restore them:" if dropped["advice"] else ""))
        for line in dropped["advice"]:
            print(f"  {line}")
        for problem in dropped["heads_damaged"]:
            print(f"damaged: {problem} (heads are not recomputed: fit it again or remove it)",
                  file=sys.stderr)
    return 1 if dropped["heads_damaged"] else 0
