"""Command-line entry points: `featstore <command>`, plus the `featurize` and `fit-head` shortcuts.

This is the error boundary: anything a user did wrong arrives as a FeatstoreError and leaves as
one line on stderr with exit status 2, never a traceback. Commands parse, call
`featstore.services` (or the store), and print; heavy libraries load only inside the command
that needs them, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from featstore.cli import head_commands, store_commands
from featstore.store.errors import FeatstoreError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="featstore",
        description="Run a frozen encoder once; train pooling and fusion heads on the cache.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    store_commands.register_store_commands(sub)
    head_commands.register_head_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FeatstoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; everything committed so far is kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print("error: out of memory; try a smaller --batch-tokens", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1


def _shortcut(command: str) -> int:
    return main([command, *sys.argv[1:]])


def featurize_main() -> int:
    return _shortcut("featurize")


def fit_head_main() -> int:
    return _shortcut("fit-head")
