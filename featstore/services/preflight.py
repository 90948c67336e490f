"""What a head command checks before anything is written and before torch, scipy or
scikit-learn load: the data it names (a dataset of the store, or a corpus file and the dataset
it will become), the encoder and fused sources it names, and the head it would save. Reads the
manifest and tables' schemas only, so a refusal comes at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from featstore.heads.artifacts import refuse_existing_head
from featstore.heads.errors import HeadError
from featstore.heads.fusion_sources import resolve_source
from featstore.heads.training_data import default_training_dataset
from featstore.store import Store, check_name, default_store_path, open_store
from featstore.store.tables import same_source


@dataclass
class Preflight:
    """The store (None before its first featurize), the training and evaluation datasets as
    they are or will be named, and whether the training data is a file not featurized yet."""

    root: Path
    store: Store | None
    train: str
    eval: str | None
    train_is_file: bool


def free_dataset_name(store: Store | None, path: Path) -> str:
    """The dataset a file goes to: the one already made from it, else its stem, else the stem
    with the first free suffix (-2, -3, ...): a file never replaces another file's dataset."""
    stem = check_name(path.stem, "dataset")
    held = store.manifest.datasets if store is not None else {}
    for name, entry in held.items():
        if same_source(entry.source, path) and (name == stem or name.startswith(f"{stem}-")):
            return name
    name, n = stem, 1
    while name in held:
        n += 1
        name = check_name(f"{stem}-{n}", "dataset")
    return name


def dataset_name(root: Path, store: Store | None, value: str) -> tuple[str, bool]:
    """(the dataset `value` is, or the one it will be once featurized; whether it is a file
    still to featurize); refused when it is neither a dataset of the store nor a file."""
    if store is not None and value in store.manifest.datasets:
        return value, False
    path = Path(value)
    if not path.is_file():
        known = ", ".join(store.manifest.datasets) if store is not None else ""
        raise HeadError(f"{value!r} is neither a dataset in store {root} "
                        f"(datasets: {known or 'none'}) nor a corpus file")
    return free_dataset_name(store, path), True


def check_data(store_path: str | Path | None, train: str | None, eval: str | None = None,  # noqa: A002
               model: str | None = None, fuse: Sequence[str] | None = (),
               unlabeled: str | None = None) -> Preflight:
    """The datasets a head command names (see `Preflight`), the encoder `model` names and each
    fused source, all checked in the store as it is now."""
    root = default_store_path(store_path)
    store = open_store(root) if (root / "manifest.json").is_file() else None
    train_name, is_file = dataset_name(root, store, train) if train is not None else ("", False)
    eval_name = dataset_name(root, store, eval)[0] if eval is not None else None
    if unlabeled is not None:
        dataset_name(root, store, unlabeled)
    if train is None:
        train_name = default_training_dataset(store if store is not None else open_store(root))
    if store is not None and store.has_encoder():
        store.resolve_encoder(model, kind="encoder")
        for source in fuse or ():
            resolve_source(store, source)
    return Preflight(root, store, train_name, eval_name, is_file)


def check_head_name(pre: Preflight, name: str, overwrite: bool) -> str:
    """A head of this name is replaced only with `overwrite`: refused before any work."""
    check_name(name, "head")
    if (pre.root / "manifest.json").is_file():
        refuse_existing_head(pre.root, name, overwrite)
    return name
