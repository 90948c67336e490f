"""Checking and repairing a whole store: its shards and tables, and the heads saved in it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from featstore.heads.artifacts import list_heads, verify_heads
from featstore.store import Store, StoreWriter, default_store_path, open_store


@dataclass
class StoreCheck:
    problems: list[str] = field(default_factory=list)  # one line per damaged file
    notes: list[str] = field(default_factory=list)  # worth knowing, not damage
    shards: int = 0
    datasets: int = 0
    heads: int = 0


def check_store(path: str | Path | None) -> StoreCheck:
    """Every checksum and structure in the store, heads included."""
    store = open_store(path)
    head_problems, notes = verify_heads(store)
    return StoreCheck(problems=[*store.verify(), *head_problems], notes=notes,
                      shards=sum(e["shards"] for e in store.sources()),
                      datasets=len(store.datasets()), heads=len(list_heads(store)))


def repair_store(path: str | Path | None) -> dict:
    """Drop damaged shards and tables so the next featurize recomputes them. Damaged heads are
    not recomputable and are only reported (`heads_damaged`): fit them again, or remove them."""
    root = default_store_path(path)
    open_store(root)
    with StoreWriter(root) as writer:
        dropped = writer.repair()
    dropped["heads_damaged"] = verify_heads(Store(root))[0]
    return dropped
