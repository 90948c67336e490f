"""Helpers shared by the guarantee tests: a small featurized store, the CLI in-process, digests."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from featstore.cli import main

TEXTS = [f"please transfer {i} to my card {i * 7 % 13} {'really ' * (i % 5)}now"
         for i in range(120)]


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """featstore CLI in-process: (exit status, stdout, stderr). An escaping exception fails."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def featurize_args(corpus: Path, store: Path, model: Path, *extra: str) -> list[str]:
    return ["featurize", str(corpus), "--store", str(store), "--model", str(model),
            "--no-laser", "--no-progress", *extra]


def write_corpus(path: Path, texts: Sequence[str], labels: Sequence[object] | None = None) -> Path:
    data = {"text": list(texts)}
    if labels is not None:
        data["label"] = list(labels)
    pd.DataFrame(data).to_csv(path, index=False)
    return path


def tree_digest(root: Path) -> str:
    """Names and bytes of every file under root: equal digests mean an unchanged store."""
    h = hashlib.sha256()
    if not root.exists():
        return "absent"
    for p in sorted(root.rglob("*")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def shard_files(root: Path) -> list[Path]:
    m = manifest(root)
    return [root / s["file"] for e in m["encoders"].values() for s in e["shards"]]


def all_features(store_root: Path, dataset: str = "c") -> dict[str, np.ndarray]:
    """Every stored layered feature of a dataset, float32, in dataset row order."""
    import featstore

    s = featstore.open(store_root)
    return {k: s.features(dataset, k, None).astype(np.float32) for k in ("cls", "mean", "max")}


def copy_store(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def one_line_error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in err
    return lines[0]
