"""Nearest neighbours over the store: exact search equals a brute-force float64 reference,
the approximate index reaches its recall, is kept in the store as a checksummed derived file,
follows the dataset (updated when texts are added, rebuilt when they change), and is refused
in one line when damaged; bad input is one line and leaves the store untouched."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from test_guarantees_support import (
    featurize_args,
    manifest,
    one_line_error,
    run_cli,
    tree_digest,
    write_corpus,
)
from test_heads_support import HIDDEN, LAYERS, build_store

import featstore
from featstore.cli import main
from featstore.search.exact import brute_force, exact_search
from featstore.search.layouts import SearchLayout, unit_parts
from featstore.search.neighbors import NeighborSearch
from featstore.store import StoreError, StoreWriter, keys_for, open_store


def clustered(n: int, width: int, seed: int, centres: int = 40) -> np.ndarray:
    """Rows around a few centres (as sentence vectors cluster), not unit length."""
    rng = np.random.default_rng(seed)
    c = np.random.default_rng(99).normal(size=(centres, width))
    return c[rng.integers(0, centres, n)] + 0.35 * rng.normal(size=(n, width))


def vector_store(root: Path, n: int = 600, seed: int = 0, name: str = "docs",
                 repeat: bool = True) -> tuple[Path, list[str], np.ndarray]:
    """A store whose `mean` rows are clustered vectors; text 5 is repeated on the last row."""
    texts = [f"document {i}" for i in range(n)]
    if repeat:
        texts[-1] = texts[5]
    rng = np.random.default_rng(seed)
    mean = np.stack([clustered(n, HIDDEN, seed + j) for j in range(len(LAYERS))], axis=1)
    feats = {"mean": mean.astype(np.float16), "cls": rng.normal(size=mean.shape).astype(
        np.float16), "max": (mean + 1).astype(np.float16)}
    feats = {k: v[_first_rows(texts)] for k, v in feats.items()}
    uniq = list(dict.fromkeys(texts))
    labels = [f"l{i % 3}" for i in range(n)]
    build_store(root, uniq, {"label": labels[:len(uniq)]}, feats, name=name)
    if repeat:  # the table holds every row (the repeated text twice), the shard each text once
        with StoreWriter(root) as w:
            table = pa.table({"_key": keys_for(texts), "text": texts, "label": labels})
            w.commit_dataset(name, table, text_column="text", source="synthetic",
                             encoders=["enc-toy"], skipped=0)
    top = open_store(root).features(name, "mean", -1).astype(np.float64)
    return root, texts, top


def _first_rows(texts: list[str]) -> list[int]:
    seen: dict[str, int] = {}
    for i, t in enumerate(texts):
        seen.setdefault(t, i)
    return list(seen.values())


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# -- exact search ---------------------------------------------------------------------------------
def test_exact_search_equals_brute_force_across_blocks(monkeypatch):
    import featstore.search.exact as exact

    monkeypatch.setattr(exact, "CORPUS_BLOCK", 97)  # many blocks, uneven last one
    monkeypatch.setattr(exact, "QUERY_BLOCK", 13)
    corpus = unit(clustered(1000, 24, 1)).astype(np.float32)
    queries = unit(clustered(60, 24, 2)).astype(np.float32)
    s, i = exact_search(queries, corpus, 10)
    bs, bi = brute_force(queries, corpus, 10)
    assert np.array_equal(i, bi)
    np.testing.assert_allclose(s, bs, atol=1e-6)
    s, i = exact_search(queries, corpus, 5000)  # k above the corpus: every row, ranked
    assert i.shape == (60, 1000) and np.array_equal(np.sort(i, axis=1)[0], np.arange(1000))


def test_exact_search_leaves_out_what_it_is_told_and_orders_ties_by_row():
    corpus = unit(clustered(300, 8, 3)).astype(np.float32)
    corpus[200] = corpus[100]  # an exact duplicate: equal scores, the lower row first
    s, i = exact_search(corpus[[100]], corpus, 3)
    assert i[0, :2].tolist() == [100, 200] and s[0, 0] == s[0, 1]
    s, i = exact_search(corpus, corpus, 4, exclude=np.arange(300))
    assert not (i == np.arange(300)[:, None]).any()
    assert i[100, 0] == 200 and i[200, 0] == 100


# -- the store's answer ---------------------------------------------------------------------------
def test_store_neighbors_equal_the_reference_with_columns(tmp_path):
    root, texts, top = vector_store(tmp_path / "s")
    store = featstore.open(root)
    queries = ["document 3", "document 250", "document 5"]
    got = store.neighbors(queries, dataset="docs", k=4)
    corpus_rows = _first_rows(texts)
    ref_s, ref_i = brute_force(unit(top[[3, 250, 5]]), unit(top[corpus_rows]), 4)
    assert got.columns.tolist() == ["query", "rank", "score", "text", "row", "label"]
    assert got["query"].tolist() == [q for q in queries for _ in range(4)]
    assert got["rank"].tolist() == [1, 2, 3, 4] * 3
    assert got["row"].tolist() == [corpus_rows[j] for j in ref_i.reshape(-1)]
    np.testing.assert_allclose(got["score"], ref_s.reshape(-1), atol=2e-6)
    assert got["text"].tolist() == [texts[corpus_rows[j]] for j in ref_i.reshape(-1)]
    assert got["label"].tolist() == [f"l{r % 3}" for r in got["row"]]
    assert got.iloc[0]["text"] == "document 3" and got.iloc[0]["score"] > 0.9999
    # the repeated text is one neighbour, found at its first row
    assert (got["text"] == "document 5").sum() == 1
    assert got[got["text"] == "document 5"]["row"].tolist() == [5]


def test_parts_count_equally_in_a_joined_layout(tmp_path):
    root, _, _ = vector_store(tmp_path / "s")
    store = featstore.open(root)
    layout = SearchLayout.resolve(store, "mean-max")
    v = layout.vectors(store, keys_for(["document 1", "document 2"]))
    mean = store.features(["document 1", "document 2"], "mean", -1).astype(np.float64)
    mx = store.features(["document 1", "document 2"], "max", -1).astype(np.float64)
    cos = lambda a: float(unit(a)[0] @ unit(a)[1])  # noqa: E731
    assert float(v[0] @ v[1]) == pytest.approx((cos(mean) + cos(mx)) / 2, abs=1e-5)
    assert np.linalg.norm(v, axis=1) == pytest.approx([1, 1], abs=1e-6)
    assert unit_parts(np.zeros((1, 4), np.float32), 2).tolist() == [[0, 0, 0, 0]]


def test_every_fixed_pooling_serves_and_learned_ones_are_refused(tmp_path):
    root, _, _ = vector_store(tmp_path / "s")
    store = featstore.open(root)
    for pool, layers in (("cls", None), ("mean", [1, 3]), ("max", None), ("concat", None),
                         ("weighted", None), ("pooler", None), ("cls-mean", None)):
        if pool == "pooler":
            continue  # the toy store holds no pooler rows
        out = store.neighbors(["document 7"], dataset="docs", k=2, pool=pool, layers=layers)
        assert out.iloc[0]["text"] == "document 7", pool
    for pool in ("lstm", "attention"):
        with pytest.raises(featstore.FeatstoreError, match="learned by a head"):
            store.neighbors(["document 7"], dataset="docs", pool=pool)


# -- the approximate index ------------------------------------------------------------------------
def test_index_reaches_its_recall_and_is_kept_as_a_checksummed_file(tmp_path):
    root, texts, top = vector_store(tmp_path / "s", n=3000)
    store = featstore.open(root)
    layout = SearchLayout.resolve(store, "mean")
    search = NeighborSearch(store, "docs", layout, "approx")
    report = search.prepare()
    assert report.method == "approx" and report.index_status == "built"
    assert report.recall >= 0.97
    queries = unit(clustered(200, HIDDEN, 77)).astype(np.float32)  # new texts' vectors
    _, approx = search.search(queries, 10)
    exact = NeighborSearch(open_store(root), "docs", layout, "exact")
    _, truth = exact.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approx, truth, strict=True)])
    assert recall >= 0.95
    (entry,) = manifest(root)["indexes"].values()
    assert entry["dataset"] == "docs" and entry["rows"] == 2999 and entry["kind"] == "faiss-hnsw"
    assert main(["verify", "--store", str(root)]) == 0
    before = tree_digest(root)
    again = NeighborSearch(open_store(root), "docs", layout, "approx")
    assert again.prepare().index_status == "used"
    assert tree_digest(root) == before  # a fresh index is read, never written again


def _grow(root: Path, extra: int, drop: int = 0) -> list[str]:
    """Replace dataset docs by its rows minus the first `drop`, plus `extra` new texts with
    their own shard."""
    store = open_store(root)
    table = store.dataset("docs")
    texts = table["text"].tolist()[drop:] + [f"added {i}" for i in range(extra)]
    feats = {}
    if extra:
        rng = np.random.default_rng(5)
        base = store.features(["document 10"], "mean", None).astype(np.float32)
        mean = base + 0.05 * rng.normal(size=(extra, len(LAYERS), HIDDEN))
        feats = {"mean": mean.astype(np.float16), "cls": mean.astype(np.float16),
                 "max": mean.astype(np.float16)}
    with StoreWriter(root) as w:
        if extra:
            new = [f"added {i}" for i in range(extra)]
            w.commit_shard("enc-toy", w.write_shard_file("enc-toy", keys_for(new), feats))
        w.commit_dataset("docs", pa.table({"_key": keys_for(texts), "text": texts,
                                           "label": ["l0"] * len(texts)}),
                         text_column="text", source="synthetic", encoders=["enc-toy"],
                         skipped=0)
    return texts


def test_index_follows_the_dataset(tmp_path):
    root, _, _ = vector_store(tmp_path / "s", n=800)
    store = featstore.open(root)
    first = store.neighbors(["document 10"], dataset="docs", k=3, method="approx")
    assert first.iloc[0]["text"] == "document 10"
    _grow(root, extra=6)  # texts added: the graph gains them, nothing else is rebuilt
    search = NeighborSearch(open_store(root), "docs", SearchLayout.resolve(open_store(root),
                                                                           "mean"), "approx")
    assert search.prepare().index_status == "updated (+6 texts)"
    got = open_store(root).neighbors(["document 10"], dataset="docs", k=8, method="approx")
    ref = open_store(root).neighbors(["document 10"], dataset="docs", k=8, method="exact")
    assert got["text"].tolist() == ref["text"].tolist()
    assert {f"added {i}" for i in range(6)} <= set(got["text"])  # new texts are found
    assert manifest(root)["indexes"][search.report.index]["rows"] == 799 + 6
    _grow(root, extra=0, drop=3)  # texts left the dataset: never returned, index rebuilt
    said = []
    search = NeighborSearch(open_store(root), "docs", SearchLayout.resolve(open_store(root),
                                                                           "mean"), "approx",
                            say=said.append)
    assert search.prepare().index_status == "built" and "no longer matches" in said[0]
    got = open_store(root).neighbors(["document 0"], dataset="docs", k=5, method="approx")
    assert not {"document 0", "document 1", "document 2"} & set(got["text"])
    assert main(["verify", "--store", str(root)]) == 0


def test_index_rebuilt_when_a_stored_row_changed(tmp_path):
    """repair dropped a shard and the texts were encoded again: other rows, same keys."""
    root, _, _ = vector_store(tmp_path / "s", n=500, repeat=False)
    store = featstore.open(root)
    store.neighbors(["document 1"], dataset="docs", method="approx")
    m = manifest(root)
    feats = {k: store.features("docs", k, None) for k in ("cls", "mean", "max")}
    keys = store.dataset("docs")["_key"].tolist()
    with StoreWriter(root) as w:
        w.drop({"enc-toy": [m["encoders"]["enc-toy"]["shards"][0]["file"]]}, [])
        w.commit_shard("enc-toy", w.write_shard_file("enc-toy", keys, feats))
    said = []
    search = NeighborSearch(open_store(root), "docs", SearchLayout.resolve(open_store(root),
                                                                           "mean"), "approx",
                            say=said.append)
    assert search.prepare().index_status == "built"


def test_auto_uses_the_index_from_its_size(tmp_path, monkeypatch):
    import featstore.search.neighbors as neighbors

    root, _, _ = vector_store(tmp_path / "s", n=300)
    store = featstore.open(root)
    layout = SearchLayout.resolve(store, "mean")
    assert NeighborSearch(store, "docs", layout).prepare().method == "exact"
    assert "indexes" not in manifest(root)  # a store without indexes keeps its old manifest
    monkeypatch.setattr(neighbors, "APPROX_MIN_ROWS", 200)
    assert NeighborSearch(store, "docs", layout).prepare().method == "approx"


# -- damage ---------------------------------------------------------------------------------------
def _indexed(tmp_path: Path) -> tuple[Path, Path]:
    root, _, _ = vector_store(tmp_path / "s", n=400)
    featstore.open(root).neighbors(["document 1"], dataset="docs", method="approx")
    (entry,) = manifest(root)["indexes"].values()
    return root, root / entry["file"]


@pytest.mark.parametrize("how", ["flip", "truncate", "delete", "link", "directory"])
def test_a_damaged_index_is_refused_named_by_verify_and_dropped_by_repair(tmp_path, capsys, how):
    root, path = _indexed(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    if how == "flip":
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0x10
        path.write_bytes(bytes(raw))
    elif how == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "delete":
        path.unlink()
    elif how == "link":
        shutil.move(path, outside / path.name)
        path.symlink_to(outside / path.name)
    else:
        path.unlink()
        path.mkdir()
    before, before_out = tree_digest(root), tree_digest(outside)
    code, _, err = run_cli(capsys, "neighbors", "--store", root, "--dataset", "docs", "--text",
                           "document 1", "--index", "approx", "--no-progress")
    assert code == 2
    one_line_error(err)
    assert "index" in err and "featstore repair" in err
    assert tree_digest(root) == before and tree_digest(outside) == before_out
    code, _, err = run_cli(capsys, "verify", "--store", root)
    assert code == 1 and "damaged: index" in err
    if how == "link":  # as for a linked shard, the writer refuses to run past a link
        code, _, err = run_cli(capsys, "repair", "--store", root)
        assert code == 2 and "symbolic link" in err
        one_line_error(err)
        path.unlink()  # removing the link, as the message says, lets repair drop the index
    code, out, _ = run_cli(capsys, "repair", "--store", root)
    assert code == 0 and "index" in out
    assert main(["verify", "--store", str(root)]) == 0
    assert "indexes" not in manifest(root)
    assert tree_digest(outside) == before_out  # the link's target is never touched
    got = featstore.open(root).neighbors(["document 1"], dataset="docs", method="approx")
    assert got.iloc[0]["text"] == "document 1"  # built again when next needed


def test_orphaned_index_files_are_swept_and_others_kept(tmp_path):
    root, path = _indexed(tmp_path)
    orphan = path.with_name("docs.abc.0123abcd.h5")
    orphan.write_bytes(b"left by a killed writer")
    mine = path.with_name("notes.txt")
    mine.write_text("not featstore's")
    with StoreWriter(root):
        pass
    assert not orphan.exists() and mine.exists() and path.exists()


def test_a_read_only_store_searches_with_an_index_in_memory(tmp_path):
    root, _, _ = vector_store(tmp_path / "s", n=300)
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    os.chmod(root, 0o555)
    try:
        said = []
        from featstore.services.neighbors import find_neighbors

        table, report = find_neighbors(open_store(root), ["document 4"], "docs", 3,
                                       method="approx", say=said.append)
        assert report.index_status == "in memory" and table.iloc[0]["text"] == "document 4"
    finally:
        os.chmod(root, 0o755)


# -- the command line -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def text_store(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("nb")
    texts = [f"please transfer {i} to my card {i % 7}" for i in range(40)]
    corpus = write_corpus(root / "c.csv", texts, [["a", "b"][i % 2] for i in range(40)])
    store = root / "store"
    assert main(featurize_args(corpus, store, tiny_model_dir("bert"))) == 0
    return store


def test_cli_encodes_new_queries_and_prints_csv(text_store, tmp_path, capsys):
    store = tmp_path / "s"
    shutil.copytree(text_store, store)
    code, out, err = run_cli(capsys, "neighbors", "--store", store, "--dataset", "c", "--text",
                             "please transfer 3 to my card 3", "--text", "a new query", "--k",
                             "2", "--no-progress")
    assert code == 0, err
    assert "encoding 1 text(s) not yet in the store" in err and "exact search" in err
    lines = out.strip().splitlines()
    assert lines[0] == "query,rank,score,text,row,label"
    assert lines[1].startswith("please transfer 3 to my card 3,1,1.0,please transfer 3 to my "
                               "card 3,3,b")
    assert len(lines) == 5
    before = tree_digest(store)
    code, out, _ = run_cli(capsys, "neighbors", "--store", store, "--dataset", "c", "--text",
                           "a new query", "--k", "2", "--json", "--no-progress")
    doc = json.loads(out)
    assert doc["search"]["method"] == "exact" and len(doc["neighbors"]) == 2
    assert tree_digest(store) == before  # the query is stored already: nothing written


def test_cli_reads_queries_from_stdin_files_and_datasets(text_store, tmp_path, capsys,
                                                         monkeypatch):
    import io

    store = tmp_path / "s"
    shutil.copytree(text_store, store)
    queries = tmp_path / "q.txt"
    queries.write_text("please transfer 1 to my card 1\n\nplease transfer 2 to my card 2\n")
    code, out, err = run_cli(capsys, "neighbors", "--store", store, "--dataset", "c", queries,
                             "--k", "1", "--no-progress")
    assert code == 0 and len(out.strip().splitlines()) == 3 and "skipped 1 empty query" in err
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(
        b"please transfer 1 to my card 1\n")))
    code, out, _ = run_cli(capsys, "neighbors", "--store", store, "--dataset", "c", "-",
                           "--k", "1", "--no-progress")
    assert code == 0 and out.strip().splitlines()[1].endswith(",1,b")
    code, out, _ = run_cli(capsys, "neighbors", "--store", store, "--dataset", "c", "c",
                           "--k", "1", "--json", "--no-progress")
    doc = json.loads(out)
    assert doc["queries"] == 40
    assert all(r["score"] > 0.9999 for r in doc["neighbors"])


@pytest.mark.parametrize("argv,message", [
    (["--dataset", "nope", "--text", "x"], "no dataset 'nope'"),
    (["--dataset", "c", "--text", "x", "--k", "0"], "--k"),
    (["--dataset", "c", "--text", "x", "--pool", "attention"], "learned by a head"),
    (["--dataset", "c", "--text", "x", "--pool", "avg"], "unknown pooling"),
    (["--dataset", "c", "--text", "x", "--layers", "9"], "layer 9"),
    (["--dataset", "c", "--text", "x", "--pool", "pooler", "--layers", "2"], "no layers"),
    (["--dataset", "c", "--text", "x", "--index", "fast"], "--index"),
    (["--dataset", "c"], "no queries"),
    (["--dataset", "c", "BINARY"], "not a text file"),
    (["--dataset", "c", "LATIN1"], "not valid UTF-8"),
    (["--dataset", "c", "missing.txt"], "neither a dataset"),
    (["--dataset", "c", "--text", "   "], "all empty"),
    (["--dataset", "../c", "--text", "x"], "invalid dataset name"),
])
def test_cli_bad_input_is_one_line_and_leaves_the_store_untouched(text_store, tmp_path, capsys,
                                                                  argv, message):
    store = tmp_path / "s"
    shutil.copytree(text_store, store)
    (tmp_path / "bin.txt").write_bytes(b"query\x00\x01\x02")
    (tmp_path / "latin.txt").write_bytes("caf\u00e9\n".encode("latin-1"))
    argv = [{"BINARY": str(tmp_path / "bin.txt"), "LATIN1": str(tmp_path / "latin.txt")}.get(
        a, a) for a in argv]
    before = tree_digest(store)
    code, _, err = run_cli(capsys, "neighbors", "--store", store, *argv, "--no-progress")
    assert code == 2
    one_line_error(err)
    assert message in err
    assert tree_digest(store) == before


def test_store_errors_are_featstore_errors():
    assert issubclass(StoreError, featstore.FeatstoreError)
