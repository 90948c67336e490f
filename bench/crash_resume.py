"""Crash and resume: SIGKILL `featurize` at random moments, re-run, check nothing is lost or wrong.

A synthetic corpus is featurized twice: once without interruption into a reference store, and once
into a second store by a run that is killed (SIGKILL, no clean-up possible) N times at random
moments, restarted after each kill, then run to the end. Kills land at random delays, soon after a
manifest commit, and while a shard file is being written (a `.part` file exists under tmp/).

After every kill the committed state must still verify. At the end every text's stored features
must equal the reference run's (float16 tolerance: batches differ between runs, so padding and
summation order differ), `featstore verify` must pass, and no temporary or orphan file may remain.

    python bench/crash_resume.py                      # 20,000 texts, 20 kills, bundled MiniLM
    python bench/crash_resume.py --tiny --texts 3000 --kills 5   # quick check, tiny random BERT

Prints `crashes survived: N/N, rows lost: L, rows wrong: W` last.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from synthetic import build_random_encoder, write_corpus  # noqa: E402

from featstore.store import KEY_COLUMN, Store  # noqa: E402
from featstore.store.manifest import MANIFEST_NAME, check_relpath  # noqa: E402


def featurize_cmd(corpus: Path, store: Path, args: argparse.Namespace) -> list[str]:
    cmd = [sys.executable, "-m", "featstore", "featurize", str(corpus), "--store", str(store),
           "--no-laser", "--no-progress", "--shard-rows", str(args.shard_rows), "--name", "corpus"]
    if args.model:
        cmd += ["--model", args.model]
    return cmd


def generation(store: Path) -> int:
    try:
        return int(json.loads((store / MANIFEST_NAME).read_text())["generation"])
    except (OSError, ValueError, KeyError):
        return -1


def part_files(store: Path) -> list[Path]:
    tmp = store / "tmp"
    try:
        return [p for p in tmp.iterdir() if p.name.endswith(".part")]
    except OSError:
        return []


def stray_files(store: Path) -> list[str]:
    """Files that are not the manifest, the lock, or named by the manifest (tmp/ must be empty)."""
    s = Store(store)
    named = {check_relpath(sh.file, store) for e in s.manifest.encoders.values()
             for sh in e.shards}
    named |= {check_relpath(d.file, store) for d in s.manifest.datasets.values()}
    out = []
    for p in store.rglob("*"):
        if p.is_dir():
            continue
        if p.parent == store and p.name in (MANIFEST_NAME, ".lock"):
            continue
        if p.resolve() not in named:
            out.append(str(p.relative_to(store)))
    return sorted(out)


def kill_once(cmd: list[str], store: Path, rng: random.Random, max_commits: int,
              env: dict) -> tuple[str, bool]:
    """Start featurize, kill it at a random moment; (how it was killed, whether it finished)."""
    start_gen = generation(store)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    mode = rng.choice(["delay", "after-commit", "during-write"])
    deadline = time.monotonic() + 600
    # Wait for the pass to start (the run commits its encoder entry first) unless killing early.
    if mode == "delay" and rng.random() < 0.25:
        target = time.monotonic() + rng.uniform(0.0, 3.0)  # while loading the model
        what = "delay-startup"
    else:
        what = mode
        while generation(store) == start_gen and proc.poll() is None:
            time.sleep(0.005)
            if time.monotonic() > deadline:
                break
        base = generation(store)
        if mode == "delay":
            target = time.monotonic() + rng.uniform(0.0, 2.5)
        elif mode == "after-commit":
            need = base + rng.randint(1, max_commits)
            while generation(store) < need and proc.poll() is None:
                time.sleep(0.002)
            target = time.monotonic() + rng.uniform(0.0, 0.05)
        else:
            skip = rng.randint(0, max_commits - 1)
            while proc.poll() is None:
                if part_files(store) and generation(store) - base >= skip:
                    break
                time.sleep(0.001)
            target = time.monotonic() + rng.uniform(0.0, 0.01)
    while time.monotonic() < target and proc.poll() is None:
        time.sleep(0.001)
    finished = proc.poll() is not None
    if not finished:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    err = proc.stderr.read().decode() if proc.stderr else ""
    if finished and proc.returncode != 0:
        raise SystemExit(f"featurize failed on its own (rc {proc.returncode}): {err.strip()}")
    return what, finished


def compare(ref_root: Path, got_root: Path, tol: float) -> tuple[int, int, int]:
    """(rows compared, rows lost, rows wrong) over every feature of the reference dataset."""
    ref, got = Store(ref_root), Store(got_root)
    keys = ref.dataset("corpus")[KEY_COLUMN].tolist()
    enc = ref.resolve_encoder(None, kind="encoder")
    if enc not in got.manifest.encoders or "corpus" not in got.manifest.datasets:
        return len(keys), len(keys), 0
    got_keys = got.dataset("corpus")[KEY_COLUMN].tolist()
    lost_keys = set(keys) - set(got_keys)
    for feat in ref.encoder_entry(enc).feature_shapes:
        idx = got.index(enc, feat)
        lost_keys |= {k for k in keys if k not in idx}
    kept = [k for k in keys if k not in lost_keys]
    wrong = np.zeros(len(kept), dtype=bool)
    for feat in ref.encoder_entry(enc).feature_shapes:
        for s in range(0, len(kept), 4096):
            part = kept[s:s + 4096]
            a = ref.gather(enc, part, feat).astype(np.float32)
            b = got.gather(enc, part, feat).astype(np.float32)
            bad = ~np.isclose(a, b, rtol=tol, atol=tol)
            wrong[s:s + len(part)] |= bad.reshape(len(part), -1).any(axis=1)
    return len(keys), len(lost_keys), int(wrong.sum())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=20_000)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--model", default=None, help="model dir or id (default: bundled MiniLM)")
    ap.add_argument("--tiny", action="store_true", help="use a tiny random BERT (quick check)")
    ap.add_argument("--shard-rows", type=int, default=None,
                    help="texts per shard (default: texts/200, so kills land between commits)")
    ap.add_argument("--max-commits", type=int, default=4,
                    help="at most this many commits per killed run before its kill")
    ap.add_argument("--tol", type=float, default=2e-3, help="float16 tolerance (rtol = atol)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="keep stores here (default: a temp dir)")
    args = ap.parse_args()
    args.shard_rows = args.shard_rows or max(10, args.texts // 200)
    rng = random.Random(args.seed)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}

    with tempfile.TemporaryDirectory(prefix="crash-resume-") as tmpdir:
        work = Path(args.workdir or tmpdir)
        work.mkdir(parents=True, exist_ok=True)
        if args.tiny and not args.model:
            args.model = str(build_random_encoder("tiny-bert", work / "tiny-bert"))
        corpus = work / "corpus.csv"
        write_corpus(corpus, args.texts, args.seed, classes=20)
        ref, crash = work / "ref", work / "crash"
        print(f"corpus {args.texts} texts, shard rows {args.shard_rows}, "
              f"model {args.model or 'bundled all-MiniLM-L6-v2'}", flush=True)

        t0 = time.perf_counter()
        subprocess.run(featurize_cmd(corpus, ref, args), check=True, env=env,
                       stdout=subprocess.DEVNULL)
        print(f"reference run: {time.perf_counter() - t0:.1f} s", flush=True)

        cmd = featurize_cmd(corpus, crash, args)
        survived = finished_early = 0
        problems: list[str] = []
        for i in range(args.kills):
            what, finished = kill_once(cmd, crash, rng, args.max_commits, env)
            finished_early += finished
            parts = len(part_files(crash))
            try:
                store = Store(crash)
                bad = store.verify()
                rows = sum(e["rows"] for e in store.sources())
            except Exception as exc:  # noqa: BLE001  the benchmark reports, never hides
                bad, rows = [f"{type(exc).__name__}: {exc}"], -1
            if not bad:
                survived += not finished
            else:
                problems += [f"kill {i + 1}: {b}" for b in bad]
            print(f"kill {i + 1:2d}/{args.kills} ({what}{', finished first' if finished else ''}):"
                  f" committed rows {rows}, generation {generation(crash)}, "
                  f"leftover .part files {parts}, verify {'ok' if not bad else 'FAILED'}",
                  flush=True)

        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        print(f"final run: {time.perf_counter() - t0:.1f} s", flush=True)
        verify = subprocess.run([sys.executable, "-m", "featstore", "verify", "--store",
                                 str(crash)], env=env, capture_output=True, text=True)
        print(f"featstore verify: rc {verify.returncode}: "
              f"{(verify.stdout + verify.stderr).strip()}", flush=True)
        strays = stray_files(crash)
        print(f"temporary or orphan files left: {len(strays)}"
              + (f" ({', '.join(strays[:5])})" if strays else ""), flush=True)
        n, lost, wrong = compare(ref, crash, args.tol)
        print(f"compared {n} texts x every stored feature (rtol = atol = {args.tol})")
        if finished_early:
            print(f"note: {finished_early} run(s) finished before their kill")
        for p in problems[:10]:
            print(f"problem: {p}")
        ok = verify.returncode == 0 and not strays
        if not ok:
            print("FAILED: store does not verify clean or has leftover files")
        killed = args.kills - finished_early
        print(f"crashes survived: {survived}/{killed}, rows lost: {lost}, rows wrong: {wrong}")
        return 0 if ok and lost == 0 and wrong == 0 and survived == killed else 1


if __name__ == "__main__":
    raise SystemExit(main())
