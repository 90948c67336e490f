"""Bad input: whatever a corpus holds, featurize either stores it correctly or stops with one
line naming the file (and row and column where there is one); never a traceback, and never a
changed store after an error."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_guarantees_support import (
    TEXTS,
    featurize_args,
    one_line_error,
    run_cli,
    tree_digest,
    write_corpus,
)

import featstore
from featstore.cli import main
from featstore.store import keys_for, normalize_text

# FEATSTORE_FUZZ_EXAMPLES=500 for a longer hunt; CI keeps it small.
FUZZ = settings(max_examples=int(os.environ.get("FEATSTORE_FUZZ_EXAMPLES", "25")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
MARKS = ["\u200b", "\u200c", "\u200d", "\ufeff", "\u200e", "\u200f", "\u202e", "\u2066",
         "\u0000", "\u0007", "\x1b", "\r", "\n", "\t", "\u00a0", "\u3000", "e\u0301", "\U0001f600",
         "\u05d0\u05d1", "\u0627\u0644", "\ufffd"]
texts_st = st.lists(
    st.one_of(
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
        st.lists(st.sampled_from(MARKS + ["card", "bank", " "]), max_size=8).map("".join),
        st.sampled_from(["", " ", "\t\n", "   \u00a0 "]),
    ),
    min_size=1, max_size=12)


@pytest.fixture(scope="module")
def base(tiny_model_dir, tmp_path_factory) -> dict:
    """A store that already holds one dataset: errors must leave it byte for byte as it was."""
    root = tmp_path_factory.mktemp("bad-input")
    model = tiny_model_dir("bert")
    corpus = write_corpus(root / "c.csv", TEXTS[:30], [i % 3 for i in range(30)])
    store = root / "store"
    assert main(featurize_args(corpus, store, model)) == 0
    return {"store": store, "model": model}


def _fresh(base, tmp: Path) -> Path:
    store = tmp / "store"
    shutil.copytree(base["store"], store)
    return store


def _expect_error(capsys, base, tmp: Path, corpus: Path, *extra: str) -> str:
    """Run featurize on `corpus` into a copy of the base store; it must fail in one line
    naming the file, and leave the store unchanged."""
    store = _fresh(base, tmp)
    digest = tree_digest(store)
    code, _, err = run_cli(capsys, *featurize_args(corpus, store, base["model"], *extra))
    assert code == 2, err
    line = one_line_error(err)
    assert corpus.name in line
    assert tree_digest(store) == digest
    return line


def _check_stored(store: Path, name: str, texts: list) -> None:
    """The dataset holds exactly the rows with text, keyed by their normalised text."""
    s = featstore.open(store)
    table = s.dataset(name)
    kept = [t for t in texts if isinstance(t, str) and normalize_text(t)]
    assert table["_key"].tolist() == keys_for(kept)
    enc = s.resolve_encoder(None, kind="encoder")
    vecs = s.gather(enc, table["_key"].tolist(), "mean", -1)
    assert vecs.shape == (len(kept), 32) and np.isfinite(vecs.astype(np.float32)).all()


@FUZZ
@given(texts=texts_st, fmt=st.sampled_from(["csv", "jsonl", "parquet", "tsv"]))
def test_fuzzed_texts_are_stored_or_refused_cleanly(capsys, base, texts, fmt):
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        corpus = tmp / f"fuzz.{fmt}"
        df = pd.DataFrame({"text": texts, "label": list(range(len(texts)))})
        if fmt == "csv":
            df.to_csv(corpus, index=False)
        elif fmt == "tsv":
            df.to_csv(corpus, index=False, sep="\t")
        elif fmt == "jsonl":
            df.to_json(corpus, orient="records", lines=True, force_ascii=False)
        else:
            df.to_parquet(corpus)
        store = _fresh(base, tmp)
        digest = tree_digest(store)
        code, _, err = run_cli(capsys, *featurize_args(corpus, store, base["model"]))
        if code != 0:
            line = one_line_error(err)
            assert code == 2 and corpus.name in line
            assert tree_digest(store) == digest
            return
        if fmt in ("csv", "tsv"):
            # What the CSV reader hands back is what was written, unless the writer itself
            # could not round-trip the text (a bare \r, a NUL): compare through a re-read.
            texts = pd.read_csv(corpus, sep="\t" if fmt == "tsv" else ",", dtype=str,
                                keep_default_na=False)["text"].tolist()
        _check_stored(store, "fuzz", texts)


def test_hard_texts_in_one_corpus(capsys, base, tmp_path):
    """Zero-width and direction marks, control characters, emoji, combining marks, a 1 MB text,
    empty and whitespace-only rows: stored (or skipped when empty), keys by normalised text."""
    big = ("the card was declined again " * 40_000)[:1_000_000]
    texts = ["\u200b", "\u202eevil\u202c", "a\u0000b", "bell\u0007", "e\u0301", "\u00e9",
             "\U0001f600 money", "\u05e9\u05dc\u05d5\u05dd", "", "   ", "\t", big,
             "tab\tinside", "new\nline", "\ufeffbom"]
    corpus = tmp_path / "hard.jsonl"
    pd.DataFrame({"text": texts}).to_json(corpus, orient="records", lines=True,
                                          force_ascii=False)
    store = _fresh(base, tmp_path)
    code, out, err = run_cli(capsys, *featurize_args(corpus, store, base["model"], "--json"))
    assert code == 0, err
    summary = json.loads(out)
    assert summary["skipped"] == 3  # "", "   ", "\t"
    # NFC: "e" + combining acute and the precomposed letter are one text, encoded once.
    assert summary["unique"] == len(texts) - 3 - 1
    _check_stored(store, "hard", texts)
    s = featstore.open(store)
    enc = s.resolve_encoder(None, kind="encoder")
    [n_windows] = s.gather_meta(enc, keys_for([big]), "n_windows")
    assert n_windows > 1000  # the 1 MB text is windowed, not truncated


def test_nan_and_missing_texts_are_skipped_and_counted(capsys, base, tmp_path):
    corpus = tmp_path / "nan.jsonl"
    corpus.write_text('{"text": "a card"}\n{"text": null}\n{"text": NaN}\n{"label": 1}\n'
                      '{"text": "a bank"}\n')
    store = _fresh(base, tmp_path)
    code, out, err = run_cli(capsys, *featurize_args(corpus, store, base["model"], "--json"))
    assert code == 0, err
    assert json.loads(out)["skipped"] == 3
    line = _expect_error(capsys, base, tmp_path / "strict", corpus, "--strict")
    assert "row 2" in line and "'text'" in line


def test_mixed_types_in_a_label_column(capsys, base, tmp_path):
    corpus = tmp_path / "mixed.jsonl"
    corpus.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 2}\n'
                      '{"text": "c", "label": "three"}\n')
    line = _expect_error(capsys, base, tmp_path, corpus)
    assert "row 3, column 'label'" in line and "'three'" in line


def test_a_column_that_changes_type_in_a_later_chunk(capsys, base, tmp_path, monkeypatch):
    """The first chunk's rows have numeric labels, a later chunk's rows have lists."""
    from featstore.featurize import corpus as corpus_mod

    real = corpus_mod.Corpus.chunks
    monkeypatch.setattr(corpus_mod.Corpus, "chunks", lambda self, rows=16384: real(self, 2))
    corpus = tmp_path / "drift.jsonl"
    corpus.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 2}\n'
                      '{"text": "c", "label": [1, 2]}\n')
    line = _expect_error(capsys, base, tmp_path, corpus)
    assert "column 'label'" in line and "row" in line


def test_non_text_values_in_the_text_column(capsys, base, tmp_path):
    corpus = tmp_path / "nested.jsonl"
    corpus.write_text('{"text": "fine"}\n{"text": {"nested": "object"}}\n')
    line = _expect_error(capsys, base, tmp_path, corpus)
    assert "row 2, column 'text'" in line and "expected text" in line


def test_csv_text_column_of_numbers_is_text(capsys, base, tmp_path):
    """CSV cells are text: a text column of numbers stores the strings as written."""
    corpus = tmp_path / "numbers.csv"
    corpus.write_text("text,label\n1,a\n2.50,b\n007,c\n")
    store = _fresh(base, tmp_path)
    code, _, err = run_cli(capsys, *featurize_args(corpus, store, base["model"]))
    assert code == 0, err
    _check_stored(store, "numbers", ["1", "2.50", "007"])
    # Without a column named like text, a numbers-only column is not guessed as the text.
    corpus2 = tmp_path / "ids.csv"
    corpus2.write_text("id,value\n1,2\n3,4\n")
    line = _expect_error(capsys, base, tmp_path / "x", corpus2)
    assert "--text-col" in line


MALFORMED = {
    "quote.csv": ('text,label\n"unterminated,1\nb,2\n', "EOF inside string"),
    "fields.csv": ("text,label\na,1\nb,2,3\n", "line 3"),
    "empty.csv": ("", "empty"),
    "header.csv": ("text,label\n", "no rows"),
    "blank.csv": ('text,label\n"  ",1\n,2\n', "no texts in column 'text'"),
    "line.jsonl": ('{"text": "a"}\n{"text": "b", oops}\n', "line 2 is not valid JSON"),
    "array.jsonl": ('{"text": "a"}\n[1, 2]\n', "line 2"),
    "garbage.parquet": ("PAR1 this is not parquet", "cannot parse as parquet"),
    "notes.txt": ("text\nhello\n", "unsupported corpus format"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_files(capsys, base, tmp_path, name):
    content, expected = MALFORMED[name]
    corpus = tmp_path / name
    corpus.write_text(content)
    assert expected in _expect_error(capsys, base, tmp_path, corpus)


def test_truncated_parquet(capsys, base, tmp_path):
    ok = tmp_path / "ok.parquet"
    pq.write_table(pa.table({"text": [f"text {i}" for i in range(500)]}), ok)
    corpus = tmp_path / "cut.parquet"
    corpus.write_bytes(ok.read_bytes()[: ok.stat().st_size // 2])
    assert "cannot parse as parquet" in _expect_error(capsys, base, tmp_path, corpus)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_wrong_encoding_names_the_line(capsys, base, tmp_path, fmt):
    corpus = tmp_path / f"latin1.{fmt}"
    rows = ["text", "fine", "caf\xe9 au lait"] if fmt == "csv" else \
        ['{"text": "fine"}', '{"text": "caf\xe9"}']
    corpus.write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    line = _expect_error(capsys, base, tmp_path, corpus)
    assert f"line {3 if fmt == 'csv' else 2} is not valid UTF-8" in line


def test_lone_surrogate_escape_in_jsonl(capsys, base, tmp_path):
    corpus = tmp_path / "surrogate.jsonl"
    corpus.write_text('{"text": "fine"}\n{"text": "bad \\ud800 half"}\n')
    store = _fresh(base, tmp_path)
    digest = tree_digest(store)
    code, _, err = run_cli(capsys, *featurize_args(corpus, store, base["model"]))
    if code == 0:  # the JSON reader may replace the half pair; then it is an ordinary text
        assert featstore.open(store).dataset("surrogate").shape[0] == 2
    else:
        assert "row 2, column 'text'" in one_line_error(err)
        assert tree_digest(store) == digest


@pytest.mark.parametrize("argv", [
    ["--text-col", "nope"], ["--name", "bad/name"], ["--shard-rows", "0"],
    ["--layers", "x,y"], ["--layers", "99"], ["--features", "cls,bogus"],
    ["--max-length", "100000"], ["--stride", "-5"], ["--device", "tpu"],
])
def test_bad_options_fail_in_one_line_before_writing(capsys, base, tmp_path, argv):
    corpus = write_corpus(tmp_path / "opts.csv", ["one text", "two texts"])
    store = _fresh(base, tmp_path)
    digest = tree_digest(store)
    code, _, err = run_cli(capsys, *featurize_args(corpus, store, base["model"], *argv))
    assert code == 2
    one_line_error(err)
    assert tree_digest(store) == digest
