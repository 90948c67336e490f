"""`neighbors` and `audit`: looking inside the data the store holds, before any head. The
work is in `featstore.services` (`neighbors.py`, `audit.py`); here flags are parsed, refused
combinations named, and results printed."""

from __future__ import annotations

import argparse
import json
import sys

from featstore.cli.flags import add_flags, joined, text_value
from featstore.heads.errors import HeadError

LAYOUT_FLAGS = ("--pool", "--layers", "--of", "--layer-start", "--model")


def register_inspection_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("neighbors", help="the stored texts of a dataset nearest each query",
                       description="For each query, the K most similar texts of a dataset by "
                       "cosine, with their other columns, as CSV (or --json). Queries the store "
                       "lacks are encoded and stored first, with the encoder the layout reads.")
    p.add_argument("input", metavar="INPUT", type=text_value, nargs="?",
                   help="- for one query per line on stdin, a text file (one query per line), "
                        "a corpus file (.csv, .tsv, .parquet, .jsonl), or a dataset in the "
                        "store")
    add_flags(p, "--store", "--dataset", "--text", "--k", *LAYOUT_FLAGS, "--index",
              "--text-col", "--json", "--no-progress",
              text={"help": "a query (repeatable); INPUT may then be left out"},
              pool={"help": "how a text's stored rows become its vector: a fixed pooling as "
                            "heads use it (default: mean)"},
              layers={"help": "layers the pooling reads, averaged (concat: joined) (default: the "
                              "pooling's, the top layer for mean)"})
    p.set_defaults(func=cmd_neighbors)

    p = sub.add_parser("audit", help="near-duplicates, leakage, likely label errors and a map "
                       "of a labelled dataset",
                       description="Near-duplicate groups within the training data and across "
                       "training and evaluation data (leakage), likely label errors from "
                       "out-of-fold probabilities (confident learning), and a 2-D map; writes "
                       "duplicates.csv, label_issues.csv and map.png into --out.")
    add_flags(p, "--store", "--train", "--eval", "--label-col", "--audit-out", "--overwrite",
              "--threshold", "--cv", *LAYOUT_FLAGS, "--index", "--seed", "--json",
              "--no-progress",
              train={"help": "the labelled data audited: a dataset in the store or a corpus "
                             "file (default: the store's only dataset, else the only one with "
                             "a split column)"},
              eval={"help": "data checked for near-twins in --train (leakage): a dataset or a "
                            "corpus file (default: the split column's test rows, if any)"},
              cv={"default": 5, "help": "folds whose held-out probabilities rate each "
                                        "training label (default: %(default)s)"},
              overwrite={"help": "replace files of the same names in --out"},
              pool={"help": "the vectors compared for duplicates and drawn in the map: a fixed "
                            "pooling (default: mean)"},
              layers={"help": "layers the pooling reads (default: the top layer)"})
    p.set_defaults(func=cmd_audit)


def _layout(args: argparse.Namespace) -> dict:
    return {"pool": args.pool or "mean", "layers": joined(args.layers), "of": args.of,
            "layer_start": args.layer_start, "encoder": args.model}


def _tell(message: str) -> None:
    print(message, file=sys.stderr)


def cmd_neighbors(args: argparse.Namespace) -> int:
    from featstore.services.neighbors import find_neighbors, read_queries
    from featstore.store import open_store

    if args.input is None and not args.text:
        raise HeadError("no queries: pass --text TEXT, a file, a dataset, or - for one query "
                        "per line on stdin")
    store = open_store(args.store)
    queries = read_queries(store, args.input, args.text or (), args.text_col, sys.stdin)
    if queries.skipped:
        _tell(f"skipped {queries.skipped} empty quer{'y' if queries.skipped == 1 else 'ies'}")
    table, report = find_neighbors(store, queries.texts, args.dataset, args.k, **_layout(args),
                                   method=args.index, progress=not args.no_progress, say=_tell)
    if args.json:
        print(json.dumps({"dataset": args.dataset, "k": args.k, "queries": len(queries.texts),
                          "skipped": queries.skipped, "search": report.to_dict(),
                          "neighbors": table.to_dict(orient="records")},
                         indent=1, default=str, ensure_ascii=False))
        return 0
    _tell(report.line())
    table.to_csv(sys.stdout, index=False)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from featstore.services.audit import audit, audit_paths

    out = audit_paths(args.out, args.train, args.overwrite)  # refused before any work
    result = audit(args.store, args.train, args.eval, label_col=args.label_col, out=out,
                   threshold=args.threshold, folds=args.cv, method=args.index, seed=args.seed,
                   progress=not args.no_progress, say=_tell, **_layout(args))
    if args.json:
        print(json.dumps(result.to_dict(), indent=1, default=str, ensure_ascii=False))
        return 0
    print(result.text())
    return 0
