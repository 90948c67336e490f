"""Which dataset trains when `--train` is left out: the store's only dataset, else the only one
with a split column; never merely the latest. Read from the manifest and the tables' schemas
alone (no pandas), so the command line refuses at once when it cannot tell."""

from __future__ import annotations

import shlex

from featstore.heads.errors import HeadError
from featstore.store import Store

SPLIT_COLUMN = "split"


def default_training_dataset(store: Store) -> str:
    """With no --train: the only dataset, else the only one with a split column. Never merely
    the latest (featurize train.csv then test.csv, and that would train on test)."""
    names = list(store.manifest.datasets)
    if not names:
        raise HeadError(f"store {store.root} has no datasets; run `featurize CORPUS --store "
                        f"{shlex.quote(str(store.root))}` first")
    if len(names) == 1:
        return names[0]
    with_split = [n for n in names if SPLIT_COLUMN in store.dataset_columns(n)]
    if len(with_split) == 1:
        return with_split[0]
    raise HeadError(f"store {store.root} holds {len(names)} datasets ({', '.join(names)}); "
                    "name the training one with --train")
