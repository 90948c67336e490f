"""Checking and repairing a whole store: its shards and tables, and the heads saved in it."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from featstore.heads.artifacts import list_heads, verify_heads
from featstore.heads.fusion_sources import featurize_flags
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


def repair_store(path: str | Path | None, wait: bool = False) -> dict:
    """Drop damaged shards and tables so the command that made them can make them again
    (`advice`: one line per dropped source or dataset naming that command). Damaged heads are
    not recomputable and are only reported (`heads_damaged`): fit them again, or remove them."""
    root = default_store_path(path)
    before = open_store(root)
    with StoreWriter(root, wait=wait) as writer:
        dropped = writer.repair()
    dropped["advice"] = repair_advice(before, dropped)
    dropped["heads_damaged"] = verify_heads(Store(root))[0]
    return dropped


def repair_advice(store: Store, dropped: dict) -> list[str]:
    """How to restore what a repair dropped: for each source or dataset it touched, the command
    that makes it again, spelled out to be run as it is."""
    lines = []
    root = shlex.quote(str(store.root))
    for enc_id in dropped["shards"]:
        fp = store.manifest.encoders[enc_id].fingerprint
        if fp.get("kind") == "vectors":
            lines.append(f"source {fp.get('name')}: import its file again (sha256 "
                         f"{str(fp.get('file_sha256'))[:12]}...): featstore import-vectors "
                         f"--store {root} --name {fp.get('name')} FILE")
            continue
        users = [n for n, d in store.manifest.datasets.items() if enc_id in d.encoders]
        for name in users:
            lines.append(f"encoder {enc_id}: "
                         + featurize_command(store, name, laser=fp.get("kind") == "laser"))
        if not users:
            lines.append(f"encoder {enc_id}: its texts are encoded again when next needed")
    for name in dropped["datasets"]:
        lines.append(f"dataset {name}: " + featurize_command(store, name))
    for name in dropped.get("indexes", []):
        entry = store.manifest.indexes[name]
        lines.append(f"index {name}: built again by the next approximate search of dataset "
                     f"{entry.dataset} (featstore neighbors --store {root} --dataset "
                     f"{shlex.quote(entry.dataset)} --index approx ...)")
    return lines


def featurize_command(store: Store, name: str, laser: bool = False) -> str:
    """The featurize command line that makes dataset `name` again (its table, and the rows of
    its encoder, or with `laser` its LASER vectors; a pair dataset's pairs, jointly encoded
    again where it has a cross source), with the settings that give the same fingerprint."""
    entry = store.manifest.datasets[name]
    if entry.source.startswith("<"):
        return f"featurize its rows again: store.featurize(frame, name={name!r})"
    words = ["featurize", entry.source, "--store", str(store.root), "--name", name]
    fps = [store.manifest.encoders[e].fingerprint for e in entry.encoders
           if e in store.manifest.encoders]
    fp = next((f for f in fps if f.get("kind") == "encoder"), None)
    if fp is not None:
        words += featurize_flags(fp)
    if entry.pair_columns:
        words += ["--pair-cols", *entry.pair_columns]
        if any(f.get("kind") == "cross" for f in fps):
            words.append("--cross")
    words.append("--laser" if laser else "--no-laser")
    return shlex.join(words)
