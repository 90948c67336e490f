"""Crashes: a writer killed (SIGKILL) at any step of the commit protocol leaves the last committed
state readable and verifiable; the next writer sweeps what the dead one left and finishes the job.

Each case runs a store writer in a child process that kills itself at one exact step: after a
shard's temporary file is written, after it is published under encoders/, after the new manifest
is written beside the old, right after the manifest replace, and around the dataset table. The
long random-kill run on the real encoder is bench/crash_resume.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import featstore
from featstore.store import StoreWriter
from featstore.store.manifest import check_relpath

CHILD = r"""
import os, signal, sys
import numpy as np
import pyarrow as pa
from featstore.store import StoreWriter, writer as writer_mod, atomic as atomic_mod

root, point, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
counts = {}

def die_after(name, real, when="after", match=None):
    def wrapped(*args, **kwargs):
        hit = match is None or match(*args)
        if hit:
            counts[name] = counts.get(name, 0) + 1
        if hit and when == "before" and counts[name] == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        out = real(*args, **kwargs)
        if hit and when == "after" and counts[name] == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    return wrapped

is_manifest = lambda src, dst: str(dst).endswith("manifest.json")
is_table = lambda tmp, final: str(final).endswith(".parquet")
is_shard = lambda tmp, final: str(final).endswith(".h5")
if point == "shard-written":
    writer_mod.write_shard = die_after(point, writer_mod.write_shard)
elif point == "shard-published":
    writer_mod.publish = die_after(point, writer_mod.publish, match=is_shard)
elif point == "manifest-written":
    atomic_mod.os.replace = die_after(point, os.replace, when="before", match=is_manifest)
elif point == "manifest-replaced":
    atomic_mod.os.replace = die_after(point, os.replace, match=is_manifest)
elif point == "table-published":
    writer_mod.publish = die_after(point, writer_mod.publish, match=is_table)

def rows(lo, hi):
    keys = [f"{i:032x}" for i in range(lo, hi)]
    cls = np.arange(lo, hi, dtype=np.float16)[:, None, None] + np.zeros((1, 2, 4), np.float16)
    return keys, {"cls": cls}

with StoreWriter(root) as w:
    w.ensure_encoder("enc", {"kind": "encoder", "model": "m", "layers": [0, 1]}, "float16",
                     {"cls": [2, 4]})
    have = set(w.store().index("enc", "cls"))
    for lo in range(0, 50, 10):
        keys, feats = rows(lo, lo + 10)
        if keys[0] in have:
            continue
        w.commit_shard("enc", w.write_shard_file("enc", keys, feats))
    w.commit_dataset("d", pa.table({"_key": [f"{i:032x}" for i in range(50)],
                                    "label": list(range(50))}),
                     text_column="text", source="synthetic", encoders=["enc"], skipped=0)
"""


def _run(root: Path, point: str, nth: int) -> int:
    return subprocess.run([sys.executable, "-c", CHILD, str(root), point, str(nth)],
                          capture_output=True).returncode


def _strays(root: Path) -> list[str]:
    m = json.loads((root / "manifest.json").read_text())
    named = {check_relpath(s["file"], root) for e in m["encoders"].values() for s in e["shards"]}
    named |= {check_relpath(d["file"], root) for d in m["datasets"].values()}
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
                  and p.name not in ("manifest.json", ".lock") and p.resolve() not in named)


@pytest.mark.parametrize(("point", "nth"), [
    ("shard-written", 2), ("shard-published", 3), ("manifest-written", 2),
    ("manifest-replaced", 3), ("manifest-written", 7), ("table-published", 1),
])
def test_killed_at_each_commit_step(tmp_path, point, nth):
    root = tmp_path / "s"
    assert _run(root, point, nth) == -signal.SIGKILL
    s = featstore.open(root)
    assert s.verify() == []
    committed = s.sources()[0]["rows"] if s.sources() else 0
    assert committed % 10 == 0  # whole shards or nothing
    keys = list(s.index("enc", "cls")) if s.sources() else []
    assert len(keys) == committed
    if keys:  # what is committed reads back exactly
        got = s.gather("enc", keys, "cls")
        want = np.array([int(k, 16) for k in keys], dtype=np.float16)
        np.testing.assert_array_equal(got[:, 0, 0], want)
    if point != "table-published":
        assert s.datasets() == []
    # The next writer sweeps the dead one's files; a full run then completes the job.
    with StoreWriter(root):
        assert _strays(root) == [] and not list((root / "tmp").iterdir())
    assert _run(root, "none", 0) == 0
    s = featstore.open(root)
    assert s.verify() == [] and _strays(root) == []
    keys = s.dataset("d")["_key"].tolist()
    np.testing.assert_array_equal(s.gather("enc", keys, "cls", 1)[:, 0],
                                  np.arange(50, dtype=np.float16))
    assert s.sources()[0]["rows"] == 50  # nothing was stored twice
