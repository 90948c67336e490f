"""The damage matrix: every kind of store file x every kind of damage x every reader and writer.

Each case copies a small store (one dataset, two shards, a saved head), damages one file, runs
one command, and classifies what happened:
- refused: a non-zero exit with one line naming the problem (`verify` may list several);
- correct: exit 0 with exactly the output of the undamaged store;
- mishandled: anything else: a traceback or an unmapped library error, different numbers, damage
  that `verify` did not report, or a byte changed outside the store.
The test prints the totals and fails on any mishandled case.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import h5py
import pandas as pd
import pytest
from test_guarantees_support import TEXTS, featurize_args, run_cli, write_corpus

import featstore
from featstore.cli import main
from featstore.store import FeatstoreError, keys_for

NEW_TEXT = "a brand new text for the matrix"
COMMITTED = ("manifest", "table", "shard data", "shard metadata", "keys", "head weights",
             "head json", "index")
KINDS = (*COMMITTED, "lock", "tmp")
DAMAGES = ("flip data", "flip metadata", "truncate", "empty", "delete", "directory",
           "link out")
COMMANDS = ("info", "verify", "repair", "featurize", "fit-head", "predict", "compare",
            "features", "import-vectors", "neighbors")


@pytest.fixture(scope="module")
def base(tiny_model_dir, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("matrix")
    model = tiny_model_dir("bert")
    labels = [["cards", "payments", "other"][i % 3] for i in range(60)]
    corpus = write_corpus(root / "c.csv", TEXTS[:60], labels)
    store = root / "store"
    assert main(featurize_args(corpus, store, model, "--shard-rows", "30")) == 0
    assert main(["fit-head", "--store", str(store), "--cv", "2", "--C", "1", "--out", "h",
                 "--no-progress"]) == 0
    assert main(["neighbors", "--store", str(store), "--dataset", "c", "--text", TEXTS[3],
                 "--index", "approx", "--no-progress"]) == 0  # builds and keeps the index
    extra = write_corpus(root / "extra.csv", [*TEXTS[:60], NEW_TEXT],
                         [*labels, "cards"])
    vectors = root / "vectors.csv"  # by key: the import reads every table and shard's keys
    pd.DataFrame({"_key": keys_for(TEXTS[:60]),
                  **{f"v{j}": [float(i * j % 7) for i in range(60)] for j in range(3)}}
                 ).to_csv(vectors, index=False)
    return {"root": root, "store": store, "model": model, "corpus": corpus, "extra": extra,
            "vectors": vectors}


# -- where each kind of file is, and where its data and metadata bytes are ----------------------
def _manifest(store: Path) -> dict:
    return json.loads((store / "manifest.json").read_text())


def _first_shard(store: Path) -> Path:
    enc = next(e for e in _manifest(store)["encoders"].values()
               if e["fingerprint"]["kind"] == "encoder")
    return store / enc["shards"][0]["file"]


def _chunk_offset(path: Path, dataset: str) -> int:
    with h5py.File(path, "r") as f:
        return f[dataset].id.get_chunk_info(0).byte_offset + 7


def locate(store: Path, kind: str) -> tuple[Path, Callable[[Path], int], Callable[[Path], int]]:
    """(path, offset of a data byte, offset of a metadata byte) of one file kind."""
    if kind == "manifest":
        text = (store / "manifest.json").read_text()
        return (store / "manifest.json", lambda p: text.index('"rows": ') + 8,
                lambda p: text.index("{"))
    if kind == "table":
        path = store / _manifest(store)["datasets"]["c"]["file"]
        return path, lambda p: p.stat().st_size // 2, lambda p: p.stat().st_size - 12
    if kind in ("shard data", "shard metadata"):
        return _first_shard(store), lambda p: _chunk_offset(p, "features/mean"), lambda p: 20
    if kind == "keys":
        return _first_shard(store), lambda p: _chunk_offset(p, "keys"), lambda p: 20
    if kind == "head weights":
        (path,) = (store / "heads" / "h").glob("head-*.safetensors")
        return path, lambda p: p.stat().st_size - 9, lambda p: 12
    if kind == "head json":
        path = store / "heads" / "h" / "head.json"
        text = path.read_text()
        return path, lambda p: text.index('"payments"') + 3, lambda p: text.index("{")
    if kind == "index":
        (entry,) = _manifest(store)["indexes"].values()
        return store / entry["file"], lambda p: _chunk_offset(p, "blob"), lambda p: 20
    if kind == "lock":
        return store / ".lock", lambda p: 0, lambda p: 0
    return store / "tmp", lambda p: 0, lambda p: 0


def damage(store: Path, kind: str, how: str, outside: Path) -> bool:
    """Damage one file; False when the damage does not apply to that kind."""
    path, data_at, meta_at = locate(store, kind)
    if path.is_dir() and how in ("flip data", "flip metadata", "truncate", "empty",
                                 "directory"):
        return False
    if kind == "lock" and how in ("flip data", "flip metadata", "truncate") and \
            path.stat().st_size == 0:
        return False
    if how.startswith("flip"):
        raw = bytearray(path.read_bytes())
        raw[(data_at if how == "flip data" else meta_at)(path)] ^= 0x10
        path.write_bytes(bytes(raw))
    elif how == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "delete":
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    elif how == "directory":
        path.unlink()
        path.mkdir()
        (path / "x").write_text("x")
    else:  # a link to an identical copy outside: reading through it would "work"
        target = outside / f"copy-of-{path.name}"
        shutil.move(path, target)
        path.symlink_to(target)
        if kind == "lock":  # a writer must not write its pid through the link
            target.write_text("not yours")
        elif kind == "tmp":  # nor sweep what the linked directory holds
            (target / "keep.part").write_text("not yours")
    return True


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file() and not p.is_symlink():
            h.update(p.read_bytes())
    return h.hexdigest()


# -- running a command, and what the undamaged store answers -------------------------------------
def command_argv(base: dict, store: Path, command: str) -> list | None:
    s = str(store)
    return {
        "info": ["info", "--store", s],
        "verify": ["verify", "--store", s],
        "repair": ["repair", "--store", s],
        "featurize": featurize_args(base["extra"], store, base["model"], "--name", "c",
                                    "--replace", "--json"),
        "fit-head": ["fit-head", "--store", s, "--train", "c", "--cv", "2", "--C", "1",
                     "--json", "--no-progress", "--out", "fitted"],
        "predict": ["predict", "--store", s, "--head", "h", "c", "--no-progress"],
        "import-vectors": ["import-vectors", "--store", s, "--name", "ext", base["vectors"],
                           "--no-progress"],
        "neighbors": ["neighbors", "--store", s, "--dataset", "c", "--text", TEXTS[3], "--k",
                      "5", "--index", "approx", "--no-progress"],
        "compare": ["compare", "--store", s, "--train", "c", "--cv", "2", "--pools", "mean",
                    "--heads", "logreg", "--json", "--no-progress", "--plot",
                    str(store.parent / "chart.png")],
    }.get(command)


def result_of(command: str, store: Path, code: int, out: str) -> object:
    """What must equal the undamaged store's answer for a run to count as correct."""
    if command == "featurize":
        return featstore.open(store).features([NEW_TEXT], "mean", None).tolist()
    if command == "fit-head":
        return json.loads(out)["metrics"]
    if command == "import-vectors":
        return featstore.open(store).features("c", "ext").tolist()
    if command == "compare":
        return [(e["name"], e["accuracy"]) for e in json.loads(out)["leaderboard"]]
    if command == "repair":
        return main(["verify", "--store", str(store)])
    return out.replace(str(store), "STORE")


def run_case(capsys, base: dict, store: Path, command: str) -> tuple[int, str, str, object]:
    if command == "features":
        capsys.readouterr()
        try:
            arr = featstore.open(store).features("c", "mean", None)
        except FeatstoreError as exc:
            return 2, "", f"error: {exc}", None
        except Exception as exc:  # noqa: BLE001  anything else escaping the API is a failure
            return 1, "", f"Traceback: {type(exc).__name__}: {exc}", None
        return 0, "", "", arr.tolist()
    try:
        code, out, err = run_cli(capsys, *command_argv(base, store, command))
        value = result_of(command, store, code, out) if code == 0 else None
    except Exception as exc:  # noqa: BLE001  an exception escaping the CLI is a traceback
        return 1, "", f"Traceback: {type(exc).__name__}: {exc}", None
    return code, out, err, value


def classify(command: str, kind: str, code: int, err: str, value: object,
             expected: object) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if "Traceback" in err or "unexpected " in err:
        return "mishandled: traceback or unmapped error"
    if code == 0:
        if command == "verify" and kind in COMMITTED:
            return "mishandled: verify missed the damage"
        return "correct" if value == expected else "mishandled: a different result"
    if command == "verify" or command == "repair":
        named = all(ln.startswith(("damaged:", "error:", "note:")) for ln in lines)
        return "refused" if lines and named else "mishandled: refusal without a named problem"
    if len(lines) == 1 and lines[0].startswith("error: "):
        return "refused"
    return f"mishandled: {len(lines)} lines on stderr"


def test_damage_matrix(capsys, base, tmp_path):
    expected = {}
    clean = tmp_path / "clean"
    for command in COMMANDS:
        shutil.rmtree(clean, ignore_errors=True)
        shutil.copytree(base["store"], clean)
        code, _, err, value = run_case(capsys, base, clean, command)
        assert code == 0, (command, err)
        expected[command] = value
    outcomes: Counter = Counter()
    bad = []
    n = 0
    for kind in KINDS:
        for how in DAMAGES:
            for command in COMMANDS:
                case = tmp_path / "case"
                shutil.rmtree(case, ignore_errors=True)
                case.mkdir()
                store, outside = case / "store", case / "outside"
                outside.mkdir()
                (outside / "canary.txt").write_text("not yours")
                shutil.copytree(base["store"], store, symlinks=True)
                if not damage(store, kind, how, outside):
                    continue
                before = _digest(outside)
                code, _, err, value = run_case(capsys, base, store, command)
                verdict = classify(command, kind, code, err, value, expected[command])
                if _digest(outside) != before:
                    verdict = "mishandled: changed a file outside the store"
                n += 1
                outcomes[verdict.split(":")[0]] += 1
                if verdict.startswith("mishandled"):
                    bad.append(f"{kind} / {how} / {command}: {verdict} ({err.strip()[:160]})")
    with capsys.disabled():
        print(f"\ndamage matrix: {n} cases ({len(KINDS)} file kinds x {len(DAMAGES)} damages x "
              f"{len(COMMANDS)} commands, where the damage applies): "
              f"{outcomes['refused']} refused, {outcomes['correct']} correct, "
              f"{outcomes['mishandled']} mishandled")
    assert not bad, "\n".join(bad)
