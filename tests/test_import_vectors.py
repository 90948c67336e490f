"""import-vectors: vectors made elsewhere stored as a named source, read back exactly, fused with
`--fuse NAME`; a refused file leaves the store byte for byte as it was."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_guarantees_support import (
    featurize_args,
    manifest,
    one_line_error,
    run_cli,
    tree_digest,
    write_corpus,
)
from test_heads_support import toy_store

from featstore.heads.estimator import HeadClassifier
from featstore.services.vector_import import import_vectors
from featstore.store import FeatstoreError, keys_for, open_store

DIM = 6


@pytest.fixture()
def toy(tmp_path):
    """A synthetic store (120 texts, dataset `toy`) and float32 vectors for its texts."""
    store, _, texts = toy_store(tmp_path / "s", n=120)
    vectors = np.random.default_rng(1).normal(size=(len(texts), DIM)).astype(np.float32)
    return tmp_path / "s", texts, vectors


def _columns(vectors: np.ndarray) -> dict[str, np.ndarray]:
    return {f"v{j}": vectors[:, j] for j in range(vectors.shape[1])}


def _write(fmt: str, directory: Path, texts: list[str], vectors: np.ndarray) -> list[str]:
    """The vectors in format `fmt`; returns the command-line arguments naming them."""
    if fmt == "csv":
        path = directory / "v.csv"
        pd.DataFrame({"text": texts, "label": ["x"] * len(texts), **_columns(vectors)}).to_csv(
            path, index=False)
        return [str(path)]
    if fmt == "tsv":
        path = directory / "v.tsv"
        pd.DataFrame({"sentence": texts, **_columns(vectors)}).to_csv(path, sep="\t",
                                                                      index=False)
        return [str(path)]
    if fmt == "parquet-list":
        path = directory / "v.parquet"
        pq.write_table(pa.table({"text": texts, "label": [1] * len(texts),
                                 "emb": pa.array(list(vectors), pa.list_(pa.float32()))}), path)
        return [str(path)]
    if fmt == "parquet-keys":
        path = directory / "k.parquet"
        pq.write_table(pa.table({"_key": keys_for(texts), **_columns(vectors)}), path)
        return [str(path)]
    if fmt == "npz":
        path = directory / "v.npz"
        np.savez(path, texts=np.array(texts), vectors=vectors)
        return [str(path)]
    lines = directory / "texts.txt"
    lines.write_text("\n".join(texts) + "\n", encoding="utf-8")
    if fmt == "npy":
        path = directory / "v.npy"
        np.save(path, vectors)
        return [str(path), "--texts", str(lines)]
    # LASER's own output: raw float32 (float16 with its --fp16), no header, 1024 wide unless --dim
    path = directory / "v.raw"
    vectors.astype("<f2" if fmt == "raw-fp16" else "<f4").tofile(path)
    return [str(path), "--texts", str(lines), "--dim", str(vectors.shape[1]),
            *(["--fp16"] if fmt == "raw-fp16" else [])]


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet-list", "parquet-keys", "npz", "npy",
                                 "raw", "raw-fp16"])
def test_every_format_reads_back_exactly(toy, tmp_path, capsys, fmt):
    root, texts, vectors = toy
    if fmt == "raw-fp16":
        vectors = vectors.astype(np.float16).astype(np.float32)
    order = np.random.default_rng(2).permutation(len(texts))  # file order is not store order
    args = _write(fmt, tmp_path, [texts[i] for i in order], vectors[order])
    code, out, err = run_cli(capsys, "import-vectors", "--name", "ext", *args, "--store", root,
                             "--json", "--no-progress")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["status"], summary["dim"], summary["vectors"], summary["in_datasets"]) == \
        ("imported", DIM, len(texts), len(texts))
    store = open_store(root)
    np.testing.assert_array_equal(store.features("toy", "ext"), vectors)  # dataset row order
    np.testing.assert_array_equal(store.features(texts[::-7], "ext"), vectors[::-7])
    fp = store.encoder_entry(summary["source_id"]).fingerprint
    assert fp["kind"] == "vectors" and fp["name"] == "ext" and fp["dim"] == DIM
    assert fp["file_sha256"] == hashlib.sha256(Path(args[0]).read_bytes()).hexdigest()
    if "--texts" in args:
        assert fp["texts_sha256"] == hashlib.sha256(Path(args[2]).read_bytes()).hexdigest()


def test_reimporting_the_same_file_changes_nothing(toy, tmp_path, capsys):
    root, texts, vectors = toy
    args = _write("csv", tmp_path, texts, vectors)
    assert run_cli(capsys, "import-vectors", "--name", "ext", *args, "--store", root)[0] == 0
    before = tree_digest(root)
    code, out, _ = run_cli(capsys, "import-vectors", "--name", "ext", *args, "--store", root)
    assert code == 0 and "unchanged" in out
    assert tree_digest(root) == before


def test_fused_imported_vectors_solve_what_the_encoder_cannot(tiny_model_dir, tmp_path, capsys):
    """Random labels: a tiny random BERT's features hold no trace of them, the imported vectors
    encode them. Fused accuracy is high, unfused near chance."""
    rng = np.random.default_rng(0)
    texts = [f"please transfer {i} to my card {i * 7 % 13}" for i in range(120)]
    labels = rng.integers(0, 2, size=len(texts))
    corpus = write_corpus(tmp_path / "c.csv", texts, [f"c{v}" for v in labels])
    store = tmp_path / "s"
    code, _, err = run_cli(capsys, *featurize_args(corpus, store, tiny_model_dir("bert")))
    assert code == 0, err
    signal = rng.normal(size=(len(texts), 4)) * 0.3
    signal[:, 0] += np.where(labels == 1, 1.0, -1.0)
    vec = tmp_path / "laser.csv"
    pd.DataFrame({"text": texts, **_columns(signal.astype(np.float32))}).to_csv(vec,
                                                                               index=False)
    assert run_cli(capsys, "import-vectors", "--name", "laser-ext", vec, "--store", store)[0] == 0

    def accuracy(*fuse: str) -> float:
        code, out, err = run_cli(capsys, "fit-head", "--store", store, "--train", "c", "--cv",
                                 "3", "--C", "1", "--json", "--no-progress", "--out",
                                 f"h{len(fuse)}", *(["--fuse", *fuse] if fuse else []))
        assert code == 0, err
        return json.loads(out)["metrics"]["accuracy"]

    fused, plain = accuracy("laser-ext"), accuracy()
    assert fused > 0.9 and plain < 0.7, (fused, plain)
    # the saved head reads the same imported rows when it predicts
    code, out, err = run_cli(capsys, "predict", "c", "--store", store, "--head", "h1")
    assert code == 0, err
    pred = pd.read_csv(io.StringIO(out))["prediction"]
    assert (pred == [f"c{v}" for v in labels]).mean() > 0.9


def test_estimator_fuses_by_name_and_names_missing_rows(toy, tmp_path):
    root, texts, vectors = toy
    store = open_store(root)
    df = store.dataset("toy")
    y = df["label"].to_numpy()
    signal = np.zeros((len(texts), DIM), dtype=np.float32)
    signal[np.arange(len(texts)), [int(v[1]) for v in y]] = 1.0
    half = tmp_path / "half.npz"
    np.savez(half, texts=np.array(texts[:60]), vectors=signal[:60])
    import_vectors(half, root, "ext")
    store.refresh()
    with pytest.raises(FeatstoreError, match=r"60 of 120 texts have no vectors in the imported "
                                        r"source 'ext'.*import-vectors --store \S+ --name ext "
                                        r"--replace"):
        HeadClassifier(pool="mean", head="logreg", fuse=["ext"]).fit(store, "toy")
    full = tmp_path / "full.npz"
    np.savez(full, texts=np.array(texts), vectors=signal)
    summary = import_vectors(full, root, "ext", replace=True)
    assert summary.status == "replaced" and summary.replaced is not None
    store.refresh()
    held = [e for e in store.manifest.encoders.values() if e.fingerprint.get("name") == "ext"]
    assert len(held) == 1 and held[0].fingerprint["file_sha256"] == summary.sha256
    train, test = df[df.split == "train"], df[df.split == "test"]
    fused = HeadClassifier(pool="mean", head="logreg", fuse=["ext"], C=1.0).fit(store, train)
    assert fused.score(store, test) == 1.0
    # another file under the same name: a head fitted on the first one refuses it
    other = tmp_path / "other.npz"
    np.savez(other, texts=np.array(texts), vectors=-signal)
    import_vectors(other, root, "ext", replace=True)
    store.refresh()
    with pytest.raises(FeatstoreError, match=r"--fuse ext: the head was trained on features of ext "
                                        r"with a fingerprint this store does not hold"):
        fused.predict(store, test)


def test_info_lists_the_source(toy, tmp_path, capsys):
    root, texts, vectors = toy
    run_cli(capsys, "import-vectors", "--name", "ext", *_write("npz", tmp_path, texts, vectors),
            "--store", root)
    code, out, _ = run_cli(capsys, "info", "--store", root)
    assert code == 0 and f"vectors ext dim={DIM}" in out
    assert run_cli(capsys, "verify", "--store", root)[0] == 0


def test_texts_no_dataset_holds_are_kept_unless_strict(toy, tmp_path, capsys):
    root, texts, vectors = toy
    new = ["a text no dataset holds", "  another one  "]
    args = _write("npz", tmp_path, [*texts[:3], *new], vectors[:5])
    before = tree_digest(root)
    code, _, err = run_cli(capsys, "import-vectors", "--name", "ext", *args, "--store", root,
                           "--strict")
    assert "2 of 5 texts are in no dataset" in one_line_error(err) and code == 2
    assert tree_digest(root) == before
    code, out, _ = run_cli(capsys, "import-vectors", "--name", "ext", *args, "--store", root,
                           "--json")
    assert code == 0 and json.loads(out)["in_datasets"] == 3
    # keyed by the store's rule: surrounding whitespace is not part of a text
    np.testing.assert_array_equal(open_store(root).features(["another one"], "ext"),
                                  vectors[4:5])


def _csv(path: Path, frame: dict) -> list[str]:
    pd.DataFrame(frame).to_csv(path, index=False)
    return [str(path)]


def _refusals(tmp: Path, texts: list[str], vectors: np.ndarray) -> dict:
    """name -> (arguments, what the one-line error must say)."""
    cols = _columns(vectors)
    nan = {k: v.copy() for k, v in cols.items()}
    nan["v2"][7] = np.nan
    ragged = tmp / "ragged.parquet"
    lists = [list(v) for v in vectors]
    lists[4] = lists[4][:-1]
    pq.write_table(pa.table({"text": texts, "emb": lists}), ragged)
    dup = [*texts[:3], texts[1]]
    lines = tmp / "lines.txt"
    lines.write_text("\n".join(texts[:10]) + "\n")
    (tmp / "short.raw").write_bytes(np.ones(31, dtype="<f4").tobytes())
    unknown = keys_for(texts[:5])
    unknown[3] = "0" * 32
    big = vectors.copy()
    big[2, 1] = 1e6
    word = {k: v.tolist() for k, v in cols.items()}
    word["v3"][4] = "n/a"
    return {
        "dim": ([*_csv(tmp / "a.csv", {"text": texts, **cols}), "--dim", str(DIM + 1)],
                f"vectors have {DIM} components, --dim says {DIM + 1}"),
        "nan": (_csv(tmp / "b.csv", {"text": texts, **nan}), "row 8, column 'v2': NaN"),
        "ragged": ([str(ragged)], "row 5, column 'emb': 5 components where row 1 has 6"),
        "word": (_csv(tmp / "w.csv", {"text": texts, **word}),
                 "row 5, column 'v3': not a number, in a vector column"),
        "duplicate": (_csv(tmp / "d.csv", {"text": dup, **_columns(vectors[:4])}),
                      "rows 2 and 4 give the same text different vectors"),
        "unknown-keys": (_csv(tmp / "k.csv", {"_key": unknown, **_columns(vectors[:5])}),
                         "1 of 5 keys name no text of store"),
        "bad-key": (_csv(tmp / "k2.csv", {"key": ["abc", *unknown[1:]],
                                          **_columns(vectors[:5])}),
                    "row 1, column 'key': 'abc' is not a store key"),
        "lines": ([*_csv(tmp / "x.csv", {"text": texts}), "--texts", str(lines)],
                  "--texts is for .npy and .raw/.bin files"),
        "raw-size": ([str(tmp / "short.raw"), "--texts", str(lines)],
                     "holds 124 bytes, not 10 rows (the lines of"),
        "no-vectors": (_csv(tmp / "n.csv", {"text": texts, "label": ["a"] * len(texts)}),
                       "no vector columns found"),
        "float16": ([*_csv(tmp / "f.csv", {"text": texts, **_columns(big)}), "--dtype",
                     "float16"], "row 3, vector component 1: 1000000.0 is too large for float16"),
        "reserved": ([*_csv(tmp / "r.csv", {"text": texts, **cols}), "--name", "laser"],
                     "source name 'laser' is reserved"),
        "model-name": ([*_csv(tmp / "m.csv", {"text": texts, **cols}), "--name", "toy-model"],
                       "name 'toy-model' already names source enc-toy"),
        "format": ([str(lines)], "unsupported vectors format '.txt'"),
    }


@pytest.mark.parametrize("case", ["dim", "nan", "ragged", "word", "duplicate", "unknown-keys",
                                  "bad-key", "lines", "raw-size", "no-vectors", "float16",
                                  "reserved", "model-name", "format", "collision"])
def test_refusals_are_one_line_and_leave_the_store_byte_identical(toy, tmp_path, capsys, case):
    root, texts, vectors = toy
    if case == "collision":
        first = _write("csv", tmp_path, texts, vectors)
        assert run_cli(capsys, "import-vectors", "--name", "ext", *first, "--store", root)[0] == 0
        args, says = (_write("npz", tmp_path, texts, vectors),
                      "source 'ext' already holds vectors of another file")
    else:
        args, says = _refusals(tmp_path, texts, vectors)[case]
    before = tree_digest(root)
    code, out, err = run_cli(capsys, "import-vectors", "--name", "ext", *args, "--store", root)
    assert code == 2 and not out
    assert says in one_line_error(err), err
    assert tree_digest(root) == before


def test_a_refused_import_creates_no_store(tmp_path, capsys):
    args = _csv(tmp_path / "k.csv", {"_key": ["0" * 32], "v0": [1.0]})
    code, _, err = run_cli(capsys, "import-vectors", "--name", "ext", *args, "--store",
                           tmp_path / "none")
    assert code == 2 and "1 of 1 keys name no text" in one_line_error(err)
    assert not (tmp_path / "none").exists()
    # texts need no store yet: they are keyed by text and join whatever is featurized later
    args = _csv(tmp_path / "t.csv", {"text": ["hello there"], "v0": [1.0], "v1": [2.0]})
    assert run_cli(capsys, "import-vectors", "--name", "ext", *args, "--store",
                   tmp_path / "new")[0] == 0
    enc = manifest(tmp_path / "new")["encoders"]
    assert [e["fingerprint"]["name"] for e in enc.values()] == ["ext"]


@pytest.mark.parametrize("dtype", ["<f4", "<f2"])
def test_laser_raw_output_is_1024_wide_in_either_precision(toy, tmp_path, capsys, dtype):
    """float32 by default, float16 with --fp16 (as LASER's own flag): a headerless file's
    dtype is said, never guessed from its size."""
    root, texts, _ = toy
    vectors = np.random.default_rng(3).normal(size=(3, 1024)).astype(dtype)
    (tmp_path / "sentences.txt").write_text("\n".join(texts[:3]) + "\n", encoding="utf-8")
    vectors.tofile(tmp_path / "embeddings.raw")
    argv = ("import-vectors", "--name", "laser-ext", tmp_path / "embeddings.raw", "--texts",
            tmp_path / "sentences.txt", "--store", root, "--json")
    if dtype == "<f2":  # without --fp16 the size fits no float32 file of three lines
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and "pass --fp16" in err
    code, out, err = run_cli(capsys, *argv, *(["--fp16"] if dtype == "<f2" else []))
    assert code == 0, err
    assert json.loads(out)["dim"] == 1024
    np.testing.assert_array_equal(open_store(root).features(texts[:3], "laser-ext"),
                                  vectors.astype(np.float32))
