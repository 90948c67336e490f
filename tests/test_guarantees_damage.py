"""Damage: flipped bytes, truncated or deleted shards, damaged tables, full disks, read-only stores.

Promise: `featstore verify` names exactly what is wrong; reading refuses a damaged file with a
clear message instead of returning wrong numbers; `featstore repair` drops what is damaged so the
next featurize recomputes exactly that; a write that fails part-way leaves the last committed
state intact and reports one line.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import subprocess
import uuid
from pathlib import Path

import h5py
import numpy as np
import pytest
from consistency import COMPUTE_DTYPES, assert_same_text_same_vector
from test_guarantees_support import (
    TEXTS,
    all_features,
    copy_store,
    featurize_args,
    manifest,
    one_line_error,
    run_cli,
    shard_files,
    tree_digest,
    write_corpus,
)

import featstore
from featstore.cli import main
from featstore.store import DamagedShardError, StoreError
from featstore.store.shards import ShardReader


@pytest.fixture(scope="module")
def bases(tiny_model_dir, tmp_path_factory):
    """One featurized store per compute dtype (120 texts in 6 shards of 20) that tests copy."""
    built: dict[str, dict] = {}

    def get(compute: str) -> dict:
        if compute not in built:
            root = tmp_path_factory.mktemp(f"damage-{compute}")
            model = tiny_model_dir("bert")
            corpus = write_corpus(root / "c.csv", TEXTS, [i % 3 for i in range(len(TEXTS))])
            store = root / "store"
            flags = ("--shard-rows", "20", "--compute-dtype", compute)
            assert main(featurize_args(corpus, store, model, *flags)) == 0
            built[compute] = {"store": store, "corpus": corpus, "model": model,
                              "features": all_features(store), "compute": compute}
        return built[compute]

    return get


@pytest.fixture
def base(bases) -> dict:
    return bases("float32")


@pytest.fixture
def store(base, tmp_path) -> Path:
    return copy_store(base["store"], tmp_path / "store")


@pytest.fixture(params=COMPUTE_DTYPES)
def computed(request, bases, tmp_path) -> tuple[dict, Path]:
    """A base store and its copy, for tests that recompute vectors: once per compute dtype."""
    base = bases(request.param)
    return base, copy_store(base["store"], tmp_path / "store")


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0x5A]))


def _data_offset(path: Path, dataset: str) -> int:
    """Byte offset of a dataset's first chunk in the file (to aim a flip at it)."""
    with h5py.File(path, "r") as f:
        ds = f[dataset]
        return ds.id.get_chunk_info(0).byte_offset if ds.chunks else ds.id.get_offset()


def _keys_of_shard(path: Path) -> list[str]:
    with ShardReader(path) as r:
        return r.keys().tolist()


def _verify(capsys, store: Path) -> tuple[int, list[str]]:
    code, out, err = run_cli(capsys, "verify", "--store", store)
    return code, [ln for ln in err.splitlines() if ln.startswith("damaged: ")]


def _repair_and_refeaturize(capsys, base, store: Path, expect_new: int) -> None:
    code, out, _ = run_cli(capsys, "repair", "--store", store)
    assert code == 0 and "dropped" in out
    assert _verify(capsys, store) == (0, [])
    compute = base["compute"]
    code, out, err = run_cli(capsys, *featurize_args(base["corpus"], store, base["model"],
                                                     "--shard-rows", "20", "--json",
                                                     "--compute-dtype", compute))
    assert code == 0, err
    import json

    summary = json.loads(out)
    assert summary["new"] == expect_new  # exactly the dropped rows are recomputed
    assert summary["compute_dtypes"] == ({compute: expect_new} if expect_new else {})
    assert _verify(capsys, store) == (0, [])
    got = all_features(store)
    if compute == "float32":
        for k, v in base["features"].items():
            np.testing.assert_allclose(got[k], v, rtol=2e-3, atol=2e-3)
    assert_same_text_same_vector(got, base["features"], compute, "vectors after repair")


@pytest.mark.parametrize("target", ["features/cls", "features/max", "keys", "meta/n_windows"])
def test_flipped_byte_is_named_refused_and_repaired(capsys, computed, target):
    base, store = computed
    shard = shard_files(store)[2]
    _flip(shard, _data_offset(shard, target) + 5)
    rel = shard.relative_to(store).as_posix()

    code, problems = _verify(capsys, store)
    assert code == 1 and len(problems) == 1
    assert rel in problems[0] and "fails its checksum" in problems[0]
    assert target in problems[0]  # which dataset inside the shard is damaged

    s = featstore.open(store)
    with pytest.raises(DamagedShardError, match=f"shard .*{shard.name}.*featstore repair"):
        if target == "meta/n_windows":
            enc = s.resolve_encoder()
            s.gather_meta(enc, s.dataset("c")["_key"].tolist(), "n_windows")
        else:
            s.features("c", "max" if target == "features/max" else "cls", None)
    _repair_and_refeaturize(capsys, base, store, expect_new=20)


def test_every_flipped_byte_is_refused_or_harmless(base, tmp_path):
    """Any single flipped byte in a shard: readers raise, or read exactly the original values."""
    src = shard_files(base["store"])[0]
    with ShardReader(src) as r:
        want = {"keys": r.keys(), **{f: r.feature(f) for f in ("cls", "mean", "max", "pooler")},
                "n_windows": r.meta("n_windows")}
    rng = random.Random(0)
    size = src.stat().st_size
    outcomes = {"refused": 0, "same": 0}
    for offset in rng.sample(range(size), 300):
        bad = tmp_path / "bad.h5"
        shutil.copyfile(src, bad)
        _flip(bad, offset)
        try:
            with ShardReader(bad) as r:
                got = {"keys": r.keys(),
                       **{f: r.feature(f) for f in ("cls", "mean", "max", "pooler")},
                       "n_windows": r.meta("n_windows")}
        except DamagedShardError:
            outcomes["refused"] += 1
            continue
        for k, v in want.items():
            assert np.array_equal(v, got[k]), f"byte {offset}: {k} changed silently"
        outcomes["same"] += 1
    assert outcomes["refused"] > 200  # most bytes hold checksummed data or metadata


def test_truncated_shard(capsys, computed):
    base, store = computed
    shard = shard_files(store)[1]
    size = shard.stat().st_size
    os.truncate(shard, size // 2)
    code, problems = _verify(capsys, store)
    assert code == 1 and len(problems) == 1
    assert f"has {size // 2} bytes, expected {size}" in problems[0]
    with pytest.raises(DamagedShardError, match=f"{shard.name} has {size // 2} bytes"):
        featstore.open(store).features("c", "mean", None)
    _repair_and_refeaturize(capsys, base, store, expect_new=20)


def test_deleted_shard(capsys, computed):
    base, store = computed
    shard = shard_files(store)[4]
    shard.unlink()
    code, problems = _verify(capsys, store)
    assert code == 1 and problems == [
        f"damaged: encoder {shard.parent.name}: shard "
        f"{shard.relative_to(store).as_posix()} is missing"]
    with pytest.raises(DamagedShardError, match=f"{shard.name} .*missing.*featstore repair"):
        featstore.open(store).features("c", "cls", -1)
    _repair_and_refeaturize(capsys, base, store, expect_new=20)


def test_damaged_dataset_table_is_refused_and_rebuilt(capsys, base, store):
    table = store / manifest(store)["datasets"]["c"]["file"]
    _flip(table, table.stat().st_size // 2)
    code, problems = _verify(capsys, store)
    assert code == 1 and problems == [
        f"damaged: dataset c: table {table.relative_to(store).as_posix()} fails its checksum"]
    with pytest.raises(DamagedShardError, match="fails its checksum"):
        featstore.open(store).dataset("c")
    # Shards are intact: repair drops the table only, and featurize rebuilds it from the cache.
    _repair_and_refeaturize(capsys, base, store, expect_new=0)


def test_enospc_while_writing_a_shard_keeps_the_last_commit(capsys, base, store, monkeypatch,
                                                            tmp_path):
    """The disk fills during the third new shard: one-line error, committed state intact."""
    from featstore.store import shards as shards_mod

    real = shards_mod.write_shard
    calls = {"n": 0}

    def filling(path, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            path.write_bytes(b"\0" * 1000)  # part of a file, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, *a, **k)

    for mod in ("featstore.store.writer", "featstore.store.shards"):
        monkeypatch.setattr(f"{mod}.write_shard", filling, raising=False)
    before = manifest(store)
    other = write_corpus(tmp_path / "other.csv", [f"new text number {i} about a refund"
                                                  for i in range(100)])
    code, out, err = run_cli(capsys, *featurize_args(other, store, base["model"],
                                                     "--shard-rows", "20"))
    assert code != 0
    line = one_line_error(err)
    assert "No space left on device" in line and "committed so far is kept" in line
    after = manifest(store)
    assert after["datasets"] == before["datasets"]  # dataset `other` was never committed
    enc = next(iter(after["encoders"]))
    assert len(after["encoders"][enc]["shards"]) == len(before["encoders"][enc]["shards"]) + 2
    monkeypatch.undo()
    assert _verify(capsys, store) == (0, [])
    got = all_features(store)  # what was there before reads back unchanged
    for k, v in base["features"].items():
        np.testing.assert_array_equal(got[k], v)
    # The next run sweeps the partial file and finishes the job from the 40 committed rows.
    import json

    code, out, err = run_cli(capsys, *featurize_args(other, store, base["model"],
                                                     "--shard-rows", "20", "--json"))
    assert code == 0, err
    assert json.loads(out)["new"] == 60 and json.loads(out)["cached"] == 40
    assert not list((store / "tmp").iterdir())


def test_enospc_while_committing_the_manifest(capsys, base, store, monkeypatch, tmp_path):
    """The manifest replace itself fails: the previous manifest stays, nothing half-written."""
    from featstore.store import writer as writer_mod

    real = writer_mod.write_json_atomic
    calls = {"n": 0}

    def failing(path, data, tmp_dir):
        calls["n"] += 1
        if calls["n"] == 1:  # the first shard's commit (the encoder entry is unchanged)
            (tmp_dir / "manifest.json.partial.tmp").write_text('{"format_vers')
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data, tmp_dir)

    monkeypatch.setattr(writer_mod, "write_json_atomic", failing)
    before = tree_digest(store / "datasets"), manifest(store)
    other = write_corpus(tmp_path / "other.csv", [f"another text {i}" for i in range(30)])
    code, _, err = run_cli(capsys, *featurize_args(other, store, base["model"],
                                                   "--shard-rows", "20"))
    assert code != 0 and "No space left on device" in one_line_error(err)
    monkeypatch.undo()
    assert (tree_digest(store / "datasets"), manifest(store)) == before
    assert _verify(capsys, store) == (0, [])
    # The next writer sweeps the published-but-uncommitted shard and the partial manifest.
    code, _, err = run_cli(capsys, *featurize_args(other, store, base["model"]))
    assert code == 0, err
    assert not list((store / "tmp").iterdir())
    on_disk = {p.name for p in (store / "encoders").rglob("*.h5")}
    assert on_disk == {p.name for p in shard_files(store)}


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       capture_output=True)
    return r.returncode == 0


@pytest.fixture
def tmpfs(tmp_path):
    where = Path("/tmp") / f"featstore-tmpfs-{uuid.uuid4().hex[:8]}"
    if not _mount_tmpfs(where, "600k"):
        where.rmdir()
        pytest.skip("mounting a tmpfs needs root")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)
    where.rmdir()


def test_real_full_disk(capsys, base, tmpfs, tmp_path):
    """A 600 KB tmpfs fills up part-way through: one line, and the committed part verifies."""
    store = copy_store(base["store"], tmpfs / "store")
    before = manifest(store)
    texts = [f"long enough text {i} " + "word " * (i % 40) for i in range(2000)]
    other = write_corpus(tmp_path / "big.csv", texts)
    code, _, err = run_cli(capsys, *featurize_args(other, store, base["model"],
                                                   "--shard-rows", "100"))
    assert code != 0
    assert "no space left on device" in one_line_error(err).lower()
    assert manifest(store)["datasets"] == before["datasets"]
    s = featstore.open(store)
    assert s.verify() == []
    np.testing.assert_array_equal(s.features("c", "cls", None).astype(np.float32),
                                  base["features"]["cls"])


def test_read_only_store_reads_but_refuses_writes(capsys, base, tmpfs, tmp_path):
    """A store on a read-only mount: reading and verify work; writes fail in one line."""
    store = copy_store(base["store"], tmpfs / "store")
    assert subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)]).returncode == 0
    digest = tree_digest(store)
    s = featstore.open(store)
    np.testing.assert_array_equal(s.features("c", "mean", None).astype(np.float32),
                                  base["features"]["mean"])
    assert _verify(capsys, store) == (0, [])
    other = write_corpus(tmp_path / "o.csv", ["a brand new text"])
    code, _, err = run_cli(capsys, *featurize_args(other, store, base["model"]))
    assert code == 2 and "read-only" in one_line_error(err)
    code, _, err = run_cli(capsys, "repair", "--store", store)
    assert code == 2 and "read-only" in one_line_error(err)
    assert tree_digest(store) == digest


def test_unwritable_store_is_refused_before_any_work(capsys, base, store, monkeypatch, tmp_path):
    """Without root a chmod would do; as root, os.access is what the writer consults."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if mode == os.W_OK
                        and Path(p) == store else real_access(p, mode, **k))
    digest = tree_digest(store)
    other = write_corpus(tmp_path / "o.csv", ["a brand new text"])
    code, _, err = run_cli(capsys, *featurize_args(other, store, base["model"]))
    assert code == 2 and f"store {store} is read-only" in one_line_error(err)
    assert tree_digest(store) == digest


def test_stale_snapshot_after_repair_says_so(capsys, base, store):
    """A reader opened before a repair gets a clear message, not a missing-file error."""
    reader = featstore.open(store)
    shard = shard_files(store)[0]
    _flip(shard, _data_offset(shard, "features/cls") + 3)
    assert run_cli(capsys, "repair", "--store", store)[0] == 0
    with pytest.raises(StoreError, match="changed since this snapshot was read.*refresh"):
        reader.features("c", "mean", None)
    reader.refresh()
    with pytest.raises(StoreError, match="20 of 120 texts have no 'mean' features"):
        reader.features("c", "mean", None)


def test_fit_head_refuses_a_damaged_shard_in_one_line(capsys, base, store):
    shard = shard_files(store)[3]
    with h5py.File(shard, "r") as f:  # the last layer's chunk: what fit-head reads by default
        ds = f["features/mean"]
        offset = ds.id.get_chunk_info_by_coord((0, ds.shape[1] - 1, 0)).byte_offset
    _flip(shard, offset + 7)
    code, _, err = run_cli(capsys, "fit-head", "--store", store, "--train", "c", "--cv", "2",
                           "--no-progress")
    line = one_line_error(err)
    assert code == 2 and shard.name in line and "featstore repair" in line
    assert not (store / "heads").exists() or not any((store / "heads").iterdir())


def test_flipped_byte_in_the_manifest_is_refused(capsys, base, store):
    """The manifest checksums itself: any flipped byte that changes its content is refused
    (one line from every command), instead of quietly changing a dtype, shape or layer list."""
    raw = (store / "manifest.json").read_bytes()
    import json

    for offset in random.Random(1).sample(range(len(raw)), 40):
        damaged = bytearray(raw)
        damaged[offset] ^= 0x01
        (store / "manifest.json").write_bytes(damaged)
        try:
            same = json.loads(damaged) == json.loads(raw)
        except ValueError:
            same = False
        if same:  # whitespace: nothing a reader uses changed
            continue
        with pytest.raises(StoreError, match="manifest of store"):
            featstore.open(store)
        code, _, err = run_cli(capsys, "verify", "--store", store)
        assert code == 2 and "manifest of store" in one_line_error(err)
    (store / "manifest.json").write_bytes(raw)
    assert _verify(capsys, store) == (0, [])


def test_hand_edited_manifest_without_checksum_is_still_checked(base, store):
    import json

    m = json.loads((store / "manifest.json").read_text())
    del m["checksum"]
    next(iter(m["encoders"].values()))["dtype"] = "float17"
    (store / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StoreError, match="malformed.*dtype 'float17'"):
        featstore.open(store)
