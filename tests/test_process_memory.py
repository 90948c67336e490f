"""featstore's processes keep freed memory for reuse: batch after batch of large activations stop
page-faulting once malloc is tuned (the pattern an encoder pass makes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# ten 8 MB activations made and freed per "batch", as a forward pass does
ROUNDS = """
import json, resource, sys
import numpy as np
from featstore.featurize.process_memory import keep_freed_memory
tuned = keep_freed_memory() if sys.argv[1] == "tuned" else None
def batch():
    arrays = [np.ones(1_000_000) for _ in range(10)]
    del arrays
batch()
faults = []
for _ in range(5):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    batch()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
print(json.dumps({"tuned": tuned, "faults": faults}))
"""


def rounds(mode: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_malloc_reuses_freed_activations_instead_of_faulting_them_back():
    stock, tuned = rounds("stock"), rounds("tuned")
    assert tuned["tuned"] is True
    # glibc as it comes hands the 80 MB back after each batch and faults it in again (pages of
    # 4 KiB, or fewer where numpy asks for huge pages)
    assert min(stock["faults"]) > 80_000_000 // (4096 * 8), stock
    assert max(tuned["faults"]) * 50 < min(stock["faults"]), (stock, tuned)


def test_the_command_line_tunes_its_process(capsys, monkeypatch):
    import featstore.cli
    from featstore.featurize.process_memory import keep_freed_memory

    calls = []
    monkeypatch.setattr(featstore.cli, "keep_freed_memory",
                        lambda: calls.append(1) or keep_freed_memory())
    assert featstore.cli.main(["--help"]) == 0
    capsys.readouterr()
    assert calls == [1]
    assert keep_freed_memory() is sys.platform.startswith("linux")
