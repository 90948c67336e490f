"""Arguments several commands share."""

from __future__ import annotations

import argparse


def add_store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", default=None,
                   help="store directory (default: $FEATSTORE_DIR, else ./featstore)")
