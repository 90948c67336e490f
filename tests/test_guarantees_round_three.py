"""Guarantees about meaning rather than bytes, one test (or a few) per failure an attack found:
how a column is ordered, what a name refers to, which model computed a vector, what a flag
promises, what predict writes, and whether a refusal's advice works."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import build_tiny_model
from test_guarantees_support import (
    copy_store,
    featurize_args,
    manifest,
    one_line_error,
    run_cli,
    tree_digest,
    write_corpus,
)

import featstore
from featstore.cli import main
from featstore.heads import HeadClassifier, HeadError
from featstore.store import StoreWriter, keys_for, text_key

WORDS = ["card", "money", "bank", "transfer", "account", "help", "lost", "refund", "balance"]


def _texts(n: int, tag: str = "") -> list[str]:
    return [f"{WORDS[i % 9]} {WORDS[(i * 5) % 9]} {tag}{i} {'very ' * (i % 4)}good"
            for i in range(n)]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Two tiny BERTs of the same shape and file size, different weights (A and B)."""
    root = tmp_path_factory.mktemp("models")
    return {k: build_tiny_model("bert", root / k, seed=s) for k, s in (("A", 0), ("B", 1))}


@pytest.fixture(scope="module")
def base(models, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("round-three")
    texts = _texts(60)
    labels = [["cards", "payments", "other"][i % 3] for i in range(60)]
    corpus = write_corpus(root / "c.csv", texts, labels)
    store = root / "store"
    assert main(featurize_args(corpus, store, models["A"], "--shard-rows", "30")) == 0
    assert main(["fit-head", "--store", str(store), "--train", "c", "--cv", "2", "--C", "1",
                 "--out", "h", "--no-progress"]) == 0
    return {"root": root, "store": store, "corpus": corpus, "texts": texts}


@pytest.fixture
def store(base, tmp_path) -> Path:
    return copy_store(base["store"], tmp_path / "store")


# -- 1. sequence order: numbers order numerically, wherever the column comes from ------------
@pytest.fixture(scope="module")
def conversations(models, tmp_path_factory) -> dict:
    """Eight conversations of 12 messages in shuffled rows, as CSV (cells are text) and JSONL
    (turns are numbers); both featurized, and a `last`-message head fitted on the JSONL one."""
    root = tmp_path_factory.mktemp("conversations")
    rng = np.random.default_rng(0)
    rows = [{"conv": f"c{c}", "turn": t, "text": f"{WORDS[(c * 7 + t) % 9]} {c} {t} {'x' * t}",
             "label": "long" if c % 2 else "short"} for c in range(8) for t in range(12)]
    df = pd.DataFrame(rows).iloc[rng.permutation(len(rows))].reset_index(drop=True)
    df.to_csv(root / "conv.csv", index=False)
    df.to_json(root / "convj.jsonl", orient="records", lines=True)
    store = root / "store"
    for f in ("conv.csv", "convj.jsonl"):
        assert main(featurize_args(root / f, store, models["A"])) == 0
    assert main(["fit-head", "--store", str(store), "--train", "convj", "--group-by", "conv",
                 "--order-by", "turn", "--seq-head", "last", "--cv", "2", "--out", "last",
                 "--no-progress"]) == 0
    return {"root": root, "store": store, "frame": df}


def test_order_by_is_numeric_from_a_csv_dataset(conversations):
    """Turns stored from a CSV file are text cells; they still order 0, 1, 2, ..., 11."""
    from featstore.heads.sequences import group_rows

    s = featstore.open(conversations["store"])
    for name in ("conv", "convj"):
        table = s.dataset(name)
        seqs = group_rows(table, "conv", "turn")
        for rows in seqs.rows:
            assert [int(t) for t in table["turn"].to_numpy()[rows]] == list(range(12)), name


def test_the_same_conversation_gets_the_same_probabilities_from_any_source(capsys,
                                                                          conversations):
    """predict with a last-message head: the CSV dataset, the CSV file, the JSONL dataset and
    the JSONL file give identical probabilities (text order would pick turn 9 as the last)."""
    store, root = conversations["store"], conversations["root"]
    got = {}
    for source in ("conv", "convj", str(root / "conv.csv"), str(root / "convj.jsonl")):
        code, out, err = run_cli(capsys, "predict", "--store", store, "--head", "last", source,
                                 "--json", "--no-progress")
        assert code == 0, err
        got[source] = {str(r["conv"]): r["p_long"] for r in json.loads(out)["predictions"]}
    first = next(iter(got.values()))
    assert all(v == first for v in got.values()), got


def test_a_sequence_file_row_without_text_is_left_out_and_counted(capsys, conversations,
                                                                  tmp_path):
    """As featurize leaves it out of the dataset: the file then predicts as the dataset does."""
    df = conversations["frame"]
    blank = pd.concat([df, pd.DataFrame([{"conv": "c0", "turn": 12, "text": "", "label":
                                          "short"}])], ignore_index=True)
    blank.to_csv(tmp_path / "blank.csv", index=False)
    store = copy_store(conversations["store"], tmp_path / "s")
    got = {}
    for source in ("conv", str(tmp_path / "blank.csv")):
        code, out, err = run_cli(capsys, "predict", "--store", store, "--head", "last", source,
                                 "--json", "--no-progress")
        assert code == 0, err
        got[source] = json.loads(out)
    assert got[str(tmp_path / "blank.csv")]["skipped"] == 1
    assert got["conv"]["predictions"] == got[str(tmp_path / "blank.csv")]["predictions"]


def test_order_by_a_column_mixing_numbers_and_words_is_refused(capsys, conversations, tmp_path):
    df = conversations["frame"].copy()
    df["turn"] = df["turn"].astype(str)
    df.loc[3, "turn"] = "later"
    df.to_csv(tmp_path / "mixed.csv", index=False)
    store = copy_store(conversations["store"], tmp_path / "s")
    digest = tree_digest(store)
    code, _, err = run_cli(capsys, "fit-head", "--store", store, "--train", tmp_path / "mixed.csv",
                           "--group-by", "conv", "--order-by", "turn", "--cv", "2",
                           "--no-progress")
    assert code == 2 and "mixes kinds of values" in one_line_error(err)
    assert tree_digest(store) == digest  # refused before the file was featurized


def test_order_ties_keep_row_order_and_text_orders_as_text():
    from featstore.heads.sequences import group_rows

    df = pd.DataFrame({"_key": list("abcdef"), "g": ["x"] * 6,
                       "t": ["2", "10", "2", "1", "3", "3"]})
    assert group_rows(df, "g", "t").rows[0].tolist() == [3, 0, 2, 4, 5, 1]
    words = pd.DataFrame({"_key": list("abc"), "g": ["x"] * 3, "t": ["b", "c", "a"]})
    assert group_rows(words, "g", "t").rows[0].tolist() == [2, 0, 1]


# -- 2. and 4. model identity ----------------------------------------------------------------
def _swap_after_load(monkeypatch, src: Path, target: Path) -> None:
    """Replace target's weights with src's right after transformers has loaded them."""
    from transformers import AutoModel

    real = AutoModel.from_pretrained.__func__

    def load_then_swap(cls, *args, **kwargs):
        out = real(cls, *args, **kwargs)
        shutil.copy(src / "model.safetensors", target / "model.safetensors.new")
        os.replace(target / "model.safetensors.new", target / "model.safetensors")
        return out

    monkeypatch.setattr(AutoModel, "from_pretrained", classmethod(load_then_swap))


def test_weights_replaced_while_the_model_loads_are_refused(capsys, models, tmp_path,
                                                            monkeypatch):
    model = shutil.copytree(models["A"], tmp_path / "m")
    corpus = write_corpus(tmp_path / "c.csv", _texts(10))
    _swap_after_load(monkeypatch, models["B"], model)
    code, _, err = run_cli(capsys, *featurize_args(corpus, tmp_path / "s", model))
    assert code == 2 and "changed while it was loading" in one_line_error(err)
    assert not (tmp_path / "s" / "manifest.json").exists() or \
        not manifest(tmp_path / "s")["encoders"]


def _reference_rows(models: dict[str, Path], texts: list[str], root: Path) -> dict[str, dict]:
    """weights SHA-256 -> {key: stored mean rows} for models A and B."""
    out = {}
    for name, path in models.items():
        corpus = write_corpus(root / f"ref-{name}.csv", texts)
        store = root / f"ref-{name}"
        assert main(featurize_args(corpus, store, path)) == 0
        s = featstore.open(store)
        (enc,) = s.manifest.encoders.values()
        rows = s.features(texts, "mean", None)
        out[enc.fingerprint["weights_sha256"]] = dict(zip(keys_for(texts), rows, strict=True))
    return out


def test_a_model_file_gone_before_it_was_hashed_is_refused_as_a_change(capsys, models,
                                                                        tmp_path, monkeypatch):
    """A trainer's temporary file listed for the fingerprint and renamed away before it was
    read is a change while loading (one line, exit 2), not an unexpected file error."""
    from featstore.featurize import encoder as encoder_mod

    model = shutil.copytree(models["A"], tmp_path / "m")
    corpus = write_corpus(tmp_path / "c.csv", _texts(10))
    real = encoder_mod._model_files
    monkeypatch.setattr(encoder_mod, "_model_files", lambda root, weights: [
        *real(root, weights), *([] if weights else [root / "w.tmp"])])  # listed, never there
    code, _, err = run_cli(capsys, *featurize_args(corpus, tmp_path / "s", model))
    assert code == 2 and "changed while it was loading" in one_line_error(err)
    assert not (tmp_path / "s" / "manifest.json").exists() or \
        not manifest(tmp_path / "s")["encoders"]
    monkeypatch.setattr(encoder_mod, "_model_files", real)
    code, _, _ = run_cli(capsys, *featurize_args(corpus, tmp_path / "s", model))
    assert code == 0  # the advice ("run again once they stay unchanged"), followed


def test_checkpoints_saved_during_runs_never_file_vectors_under_another_fingerprint(
        capsys, models, tmp_path):
    """A trainer swaps model.safetensors between A and B (0.05 s apart, with pauses)
    while twelve small runs featurize: each run is refused in one line, or every vector it committed
    is exactly what the model named by its fingerprint computes."""
    texts = _texts(96, "run")
    refs = _reference_rows(models, texts, tmp_path)
    model = shutil.copytree(models["A"], tmp_path / "m")
    stop = threading.Event()
    outcomes: list[int] = []

    def trainer() -> None:
        flip = 0
        while not stop.is_set():
            flip ^= 1
            shutil.copy(models["AB"[flip]] / "model.safetensors", model / "w.tmp")
            os.replace(model / "w.tmp", model / "model.safetensors")
            stop.wait(1.2 if flip and outcomes.count(0) < 2 else 0.05)

    thread = threading.Thread(target=trainer, daemon=True)
    thread.start()
    try:
        for run in range(12):
            corpus = write_corpus(tmp_path / f"run{run}.csv", texts[run * 8:(run + 1) * 8])
            code, _, err = run_cli(capsys, *featurize_args(corpus, tmp_path / "s", model,
                                                           "--shard-rows", "4"))
            outcomes.append(code)
            if code:
                assert code == 2 and one_line_error(err)
    finally:
        stop.set()
        thread.join()
    if not (tmp_path / "s" / "manifest.json").exists():
        return  # every run refused: nothing filed at all
    s = featstore.open(tmp_path / "s")
    assert s.verify() == []
    other = dict(zip(refs, reversed(list(refs.values())), strict=True))
    for enc_id, enc in s.manifest.encoders.items():
        weights = enc.fingerprint["weights_sha256"]  # only A's or B's weights, never a mix
        keys = list(s.index(enc_id, "mean"))
        got = s.gather(enc_id, keys, "mean", None).astype(np.float32)
        want = np.stack([refs[weights][k] for k in keys]).astype(np.float32)
        wrong = np.stack([other[weights][k] for k in keys]).astype(np.float32)
        np.testing.assert_allclose(got, want, atol=0.02)  # batch padding moves a rounding
        assert np.abs(got - wrong).max() > 0.2  # the other model's rows are far off


def test_one_model_directory_spelled_three_ways_is_one_encoder(capsys, models, tmp_path,
                                                               monkeypatch):
    model = shutil.copytree(models["A"], tmp_path / "mA")
    corpus = write_corpus(tmp_path / "c.csv", _texts(20), ["a", "b"] * 10)
    monkeypatch.chdir(tmp_path)
    for spelling in ("mA", str(model), "./mA/"):
        code, out, err = run_cli(capsys, *featurize_args(corpus, tmp_path / "s", spelling,
                                                         "--json"))
        assert code == 0, err
    assert len(manifest(tmp_path / "s")["encoders"]) == 1
    assert json.loads(out)["new"] == 0
    for spelling in ("mA", str(model), "./mA/"):
        code, _, err = run_cli(capsys, "fit-head", "--store", tmp_path / "s", "--model",
                               spelling, "--cv", "2", "--out", "h", "--overwrite",
                               "--no-progress")
        assert code == 0, err
    # the encoder loads from anywhere: a new text predicted from another directory
    monkeypatch.chdir(tmp_path.parent)
    code, out, err = run_cli(capsys, "predict", "--store", tmp_path / "s", "--head", "h",
                             "--text", "a text never seen", "--no-progress")
    assert code == 0, err


def test_a_store_recording_a_relative_model_path_is_still_one_encoder(capsys, models, tmp_path,
                                                                      monkeypatch):
    """Stores written before paths were made absolute recorded `--model mA` as typed."""
    from featstore.store.manifest import manifest_checksum

    model = shutil.copytree(models["A"], tmp_path / "mA")
    corpus = write_corpus(tmp_path / "c.csv", _texts(12))
    monkeypatch.chdir(tmp_path)
    assert main(featurize_args(corpus, tmp_path / "s", model)) == 0
    data = manifest(tmp_path / "s")
    (enc,) = data["encoders"].values()
    enc["fingerprint"]["model"] = "mA"
    data["checksum"] = manifest_checksum(data)
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(data))
    code, out, err = run_cli(capsys, *featurize_args(corpus, tmp_path / "s", "./mA/", "--json"))
    assert code == 0, err
    assert json.loads(out)["new"] == 0 and len(manifest(tmp_path / "s")["encoders"]) == 1


def test_a_local_directory_wins_over_the_bundled_name(capsys, models, tmp_path, monkeypatch):
    shutil.copytree(models["A"], tmp_path / "all-MiniLM-L6-v2")
    monkeypatch.chdir(tmp_path)
    corpus = write_corpus(tmp_path / "c.csv", _texts(4))
    code, out, err = run_cli(capsys, *featurize_args(corpus, tmp_path / "s", "all-MiniLM-L6-v2",
                                                     "--json"))
    assert code == 0, err
    (enc,) = manifest(tmp_path / "s")["encoders"].values()
    assert enc["fingerprint"]["hidden"] == 32  # the tiny model, not the bundled 384-wide one
    assert enc["fingerprint"]["model"] == str(tmp_path / "all-MiniLM-L6-v2")


# -- 3. names cannot shadow features or each other ---------------------------------------------
def _vectors_csv(path: Path, texts: list[str], dim: int = 16) -> Path:
    rng = np.random.default_rng(len(texts))
    pd.DataFrame({"text": texts, **{f"v{j}": rng.normal(size=len(texts)) for j in range(dim)}}
                 ).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("name", ["mean", "cls", "max", "pooler", "tokens", "vector", "laser"])
def test_import_vectors_refuses_a_feature_or_kind_name(capsys, base, store, tmp_path, name):
    vectors = _vectors_csv(tmp_path / "v.csv", base["texts"])
    digest = tree_digest(store)
    code, _, err = run_cli(capsys, "import-vectors", "--store", store, "--name", name, vectors)
    assert code == 2 and "reserved" in one_line_error(err)
    assert tree_digest(store) == digest


def test_a_source_named_like_a_feature_in_an_older_store_shadows_nothing(base, store, tmp_path,
                                                                         monkeypatch):
    from featstore.services import vector_import

    monkeypatch.setattr(vector_import, "RESERVED_NAMES", ())  # as an older featstore allowed
    vector_import.import_vectors(_vectors_csv(tmp_path / "v.csv", base["texts"]), store, "mean")
    s = featstore.open(store)
    enc = next(k for k, e in s.manifest.encoders.items() if e.fingerprint["kind"] == "encoder")
    assert s.features("c", "mean", -1).shape == (60, 32)
    assert s.features("c", "mean", -1, encoder=enc).shape == (60, 32)
    imported = next(k for k in s.manifest.encoders if k.startswith("mean-"))
    assert s.features("c", "mean", encoder=imported).shape == (60, 16)


# -- 5. what repair drops comes back by the command it names -----------------------------------
def _flip_shard(store: Path, source_prefix: str) -> None:
    m = manifest(store)
    enc_id = next(k for k in m["encoders"] if k.startswith(source_prefix))
    path = store / m["encoders"][enc_id]["shards"][0]["file"]
    with h5py.File(path, "r") as f:
        offset = f["features/vector"].id.get_chunk_info(0).byte_offset + 5
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x10
    path.write_bytes(bytes(raw))


def test_a_repaired_imported_source_comes_back_and_its_heads_work(capsys, base, store, tmp_path):
    vectors = _vectors_csv(tmp_path / "v.csv", base["texts"])
    assert run_cli(capsys, "import-vectors", "--store", store, "--name", "ext", vectors)[0] == 0
    assert run_cli(capsys, "fit-head", "--store", store, "--fuse", "ext", "--cv", "2", "--C", "1",
                   "--out", "fused", "--no-progress")[0] == 0
    _flip_shard(store, "ext-")
    code, out, _ = run_cli(capsys, "repair", "--store", store)
    assert code == 0 and f"featstore import-vectors --store {store} --name ext FILE" in out
    for extra in ([], ["--replace"]):  # with or without --replace: restored, not "unchanged"
        code, out, err = run_cli(capsys, "import-vectors", "--store", store, "--name", "ext",
                                 vectors, "--json", *extra)
        assert code == 0, err
        assert json.loads(out)["status"] == ("restored" if not extra else "unchanged")
    assert featstore.open(store).features("c", "ext").shape == (60, 16)
    code, _, err = run_cli(capsys, "predict", "--store", store, "--head", "fused", "c",
                           "--no-progress")
    assert code == 0, err


# -- 6. LASER's raw files: the dtype is said, never guessed ------------------------------------
def _raw(tmp_path: Path, texts: list[str], dtype: str, dim: int = 8) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    vecs = rng.uniform(-1, 1, size=(len(texts), dim)).astype(dtype)
    vecs[:, 1::2] = 0  # LASER's vectors hold many zeros
    raw = tmp_path / f"e-{dtype}.raw"
    vecs.tofile(raw)
    lines = tmp_path / f"t-{dtype}.txt"
    lines.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return raw, lines


def test_a_float16_raw_file_with_half_the_lines_is_refused(capsys, base, store, tmp_path):
    raw, lines = _raw(tmp_path, base["texts"], "float16")
    half = tmp_path / "half.txt"
    half.write_text("\n".join(base["texts"][:30]) + "\n")
    digest = tree_digest(store)
    code, _, err = run_cli(capsys, "import-vectors", "--store", store, "--name", "l", raw,
                           "--texts", half, "--dim", "8")
    assert code == 2 and "float16 (LASER's --fp16)" in one_line_error(err)
    code, _, err = run_cli(capsys, "import-vectors", "--store", store, "--name", "l", raw,
                           "--texts", lines, "--dim", "4")  # the wrong width, the same size
    assert code == 2 and "--fp16" in one_line_error(err)
    assert tree_digest(store) == digest


def test_a_float16_raw_file_reads_right_with_fp16(capsys, base, store, tmp_path):
    raw, lines = _raw(tmp_path, base["texts"], "float16")
    code, _, err = run_cli(capsys, "import-vectors", "--store", store, "--name", "l", raw,
                           "--texts", lines, "--dim", "8")
    assert code == 2 and "fits float32" not in err and "pass --fp16" in one_line_error(err)
    code, _, err = run_cli(capsys, "import-vectors", "--store", store, "--name", "l", raw,
                           "--texts", lines, "--dim", "8", "--fp16")
    assert code == 0, err
    want = np.fromfile(raw, dtype="<f2").reshape(60, 8).astype(np.float32)
    np.testing.assert_array_equal(featstore.open(store).features(base["texts"], "l"), want)


def test_float16_storage_refuses_values_it_would_flush_to_zero(capsys, base, store, tmp_path):
    vectors = tmp_path / "tiny.csv"
    pd.DataFrame({"text": base["texts"], "v0": 1e-9, "v1": -2e-9}).to_csv(vectors, index=False)
    code, _, err = run_cli(capsys, "import-vectors", "--store", store, "--name", "t", vectors,
                           "--dtype", "float16")
    assert code == 2 and "too small for float16" in one_line_error(err)
    code, _, err = run_cli(capsys, "import-vectors", "--store", store, "--name", "t", vectors)
    assert code == 0, err
    assert np.abs(featstore.open(store).features("c", "t")).min() > 0


# -- 7. a later pass never rewrites committed vectors ------------------------------------------
def test_tokens_over_stored_texts_add_only_token_states(capsys, base, store, tmp_path, models):
    before = {k: featstore.open(store).features("c", k, None) for k in ("cls", "mean", "max")}
    subset = write_corpus(tmp_path / "sub.csv", base["texts"][5:31])
    code, out, err = run_cli(capsys, *featurize_args(subset, store, models["A"], "--tokens",
                                                     "--json"))
    assert code == 0, err
    s = featstore.open(store)
    for k, arr in before.items():
        np.testing.assert_array_equal(s.features("c", k, None), arr)
    (enc,) = manifest(store)["encoders"].values()
    assert enc["shards"][-1]["features"] == ["tokens"]
    assert len(s.gather_ragged(next(iter(s.manifest.encoders)), keys_for(base["texts"][5:31]),
                               "tokens")) == 26
    # info counts texts, not shard rows: the tokens-only shard adds no rows
    n = len(set(base["texts"]))
    code, out, _ = run_cli(capsys, "info", "--store", store, "--json")
    (info,) = json.loads(out)["encoders"]
    assert info["rows"] == n and info["compute_dtypes"] == {"float32": n}


# -- 8. --dtype says what it does --------------------------------------------------------------
def test_dtype_help_says_it_is_storage_and_names_compute_dtype(capsys):
    code, out, _ = run_cli(capsys, "featurize", "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "precision the vectors are stored in" in text
    assert "full float32 values need --compute-dtype float32 too" in text


# -- 9. predict's output ---------------------------------------------------------------------
def test_predict_keeps_input_columns_named_like_its_own(capsys, base, store, tmp_path):
    rows = tmp_path / "in.csv"
    pd.DataFrame({"text": base["texts"][:4], "p_cards": ["mine"] * 4, "label_1": ["x"] * 4,
                  "prediction": ["gold"] * 4}).to_csv(rows, index=False)
    for extra in ([], ["--top-k", "1"]):
        code, out, err = run_cli(capsys, "predict", "--store", store, "--head", "h", rows,
                                 "--json", "--no-progress", *extra)
        assert code == 0, err
        first = json.loads(out)["predictions"][0]
        assert first["prediction_given"] == "gold"
        assert first["p_cards_given" if not extra else "p_cards"] == "mine"
        assert first["label_1_given" if extra else "label_1"] == "x"
        assert isinstance(first["p_cards" if not extra else "p_1"], float)


def test_predict_out_never_overwrites_and_writes_its_extensions_format(capsys, base, store,
                                                                      tmp_path):
    target = tmp_path / "p.parquet"
    target.write_text("mine")
    argv = ("predict", "--store", store, "--head", "h", "c", "--no-progress", "--out", target)
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "--overwrite" in one_line_error(err)
    assert target.read_text() == "mine"
    code, _, err = run_cli(capsys, *argv, "--overwrite")
    assert code == 0, err
    table = pd.read_parquet(target)
    assert len(table) == 60 and "p_cards" in table.columns
    code, _, err = run_cli(capsys, "predict", "--store", store, "--head", "h", "c", "--out",
                           tmp_path / "p.txt", "--no-progress")
    assert code == 2 and "--format" in one_line_error(err)
    code, _, err = run_cli(capsys, "predict", "--store", store, "--head", "h", "c", "--out",
                           tmp_path / "p.jsonl", "--format", "csv", "--no-progress")
    assert code == 2 and "names jsonl" in one_line_error(err)


def test_predict_counts_the_rows_it_skips(capsys, base, store, tmp_path):
    rows = tmp_path / "in.csv"
    pd.DataFrame({"text": [base["texts"][0], "", "  ", base["texts"][1]], "id": [1, 2, 3, 4]}
                 ).to_csv(rows, index=False)
    code, out, err = run_cli(capsys, "predict", "--store", store, "--head", "h", rows, "--json",
                             "--no-progress")
    assert code == 0, err
    assert json.loads(out)["skipped"] == 2 and "skipped 2 input row(s)" in err


# -- 10. advice that works ---------------------------------------------------------------------
def test_a_head_whose_model_directory_now_holds_another_model_writes_nothing(capsys, models,
                                                                            tmp_path):
    model = shutil.copytree(models["A"], tmp_path / "m")
    corpus = write_corpus(tmp_path / "c.csv", _texts(20), ["a", "b"] * 10)
    store = tmp_path / "s"
    assert main(featurize_args(corpus, store, model)) == 0
    assert main(["fit-head", "--store", str(store), "--cv", "2", "--out", "h",
                 "--no-progress"]) == 0
    shutil.copy(models["B"] / "model.safetensors", model / "model.safetensors")
    digest = tree_digest(store)
    code, _, err = run_cli(capsys, "predict", "--store", store, "--head", "h", "--text",
                           "a new text", "--no-progress")
    assert code == 2 and "restore the model's files" in one_line_error(err)
    assert tree_digest(store) == digest
    shutil.copy(models["A"] / "model.safetensors", model / "model.safetensors")  # the advice
    code, _, err = run_cli(capsys, "predict", "--store", store, "--head", "h", "--text",
                           "a new text", "--no-progress")
    assert code == 0, err


def test_an_empty_text_is_refused_as_empty_not_as_unfeaturized(base, store):
    clf = HeadClassifier.load(featstore.open(store), "h")
    with pytest.raises(HeadError, match="text 2 is empty or missing"):
        clf.predict(featstore.open(store), [base["texts"][0], "   "])


def test_auto_with_an_unlabeled_file_works_the_first_time(capsys, base, store, tmp_path):
    unlabeled = write_corpus(tmp_path / "u.csv", _texts(12, "u"))
    code, _, err = run_cli(capsys, "fit-head", "--store", store, "--auto", "--budget", "5",
                           "--unlabeled", unlabeled, "--cv", "2", "--no-progress")
    assert code == 0, err


@pytest.fixture
def read_only_dir(tmp_path) -> Path:
    """A directory on a read-only mount (root ignores permission bits)."""
    where = tmp_path / "ro"
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(where)],
            capture_output=True).returncode != 0:
        pytest.skip("a read-only mount needs root")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.parametrize("command", ["fit-head --report", "compare", "probe-layers"])
def test_output_directories_that_cannot_be_written_are_refused_before_any_work(
        capsys, store, read_only_dir, command):
    digest = tree_digest(store)
    argv = {"fit-head --report": ["fit-head", "--store", store, "--cv", "2", "--out", "r",
                                  "--report", read_only_dir / "rep"],
            "compare": ["compare", "--store", store, "--cv", "2", "--pools", "mean", "--heads",
                        "logreg", "--charts", read_only_dir, "--json"],
            "probe-layers": ["probe-layers", "--store", store, "--cv", "2", "--charts",
                             read_only_dir, "--json"]}[command]
    code, out, err = run_cli(capsys, *argv, "--no-progress")
    assert code == 2 and "cannot create" in one_line_error(err) and not out
    assert tree_digest(store) == digest  # no head saved


# -- 11. smaller ones --------------------------------------------------------------------------
def test_a_byte_order_mark_is_not_part_of_the_first_text(capsys, base, store, tmp_path):
    vecs = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    np.save(tmp_path / "v.npy", vecs)
    (tmp_path / "t.txt").write_bytes(b"\xef\xbb\xbf" + "\n".join(base["texts"][:3]).encode())
    code, _, err = run_cli(capsys, "import-vectors", "--store", store, "--name", "n",
                           tmp_path / "v.npy", "--texts", tmp_path / "t.txt", "--strict")
    assert code == 0, err
    s = featstore.open(store)
    (src,) = [k for k in s.manifest.encoders if k.startswith("n-")]
    assert text_key(base["texts"][0]) in s.index(src, "vector")
    (tmp_path / "b.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps({"text": "hi"}).encode())
    from featstore.featurize.corpus import open_corpus

    assert open_corpus(tmp_path / "b.jsonl").text_column == "text"


def test_undecodable_stdin_names_its_line(capsys, store, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"fine\n\xff\xfe bad\n")))
    code, _, err = run_cli(capsys, "predict", "--store", store, "--head", "h", "-",
                           "--no-progress")
    assert code == 2 and "stdin line 2 is not valid UTF-8" in one_line_error(err)


def test_a_header_only_csv_has_no_rows(capsys, store, tmp_path):
    (tmp_path / "h.csv").write_text("text,v0,v1\n")
    code, _, err = run_cli(capsys, "import-vectors", "--store", store, "--name", "e",
                           tmp_path / "h.csv")
    assert code == 2 and "no rows" in one_line_error(err)


def test_estimators_wait_for_the_writer_lock(base, store):
    """Encoding on the side of a fit waits for another writer instead of failing (what
    GridSearchCV(n_jobs=2) runs into)."""
    texts = _texts(8, "lock")
    result: dict = {}

    def fit() -> None:
        clf = HeadClassifier(store=str(store), pool="mean", head="logreg", C=1.0)
        result["fitted"] = clf.fit(texts, ["a", "b"] * 4)

    with StoreWriter(store):
        worker = threading.Thread(target=fit)
        worker.start()
        worker.join(3.0)
        assert worker.is_alive()  # waiting, not failed
    worker.join(60)
    assert "fitted" in result


def test_grid_search_in_parallel_processes(base, store):
    from sklearn.model_selection import GridSearchCV

    texts = [*base["texts"][:30], *_texts(30, "grid")]
    labels = [["a", "b", "c"][i % 3] for i in range(60)]
    grid = GridSearchCV(HeadClassifier(store=str(store), pool="mean", head="logreg"),
                        {"C": [0.1, 1.0, 10.0]}, cv=2, n_jobs=2).fit(texts, labels)
    assert set(grid.cv_results_["mean_test_score"].round(6)) and \
        not np.isnan(grid.cv_results_["mean_test_score"]).any()


def test_fit_head_help_says_what_train_defaults_to(capsys):
    code, out, _ = run_cli(capsys, "fit-head", "--help")
    text = " ".join(out.split())
    assert code == 0 and "the store's only dataset, else the only one with a split column" in text
    assert "most recently" not in text

