"""Pair corpora in the store: `featurize --pair-cols A B` encodes both texts as any texts (each
unique text once, across both columns and every dataset), the table keeps the pair's key and
both texts' keys; `--cross` encodes each pair jointly with the tokenizer's own pair encoding
(long pairs windowed, never cut) into a source keyed by the ordered pair, with a sequence
classifier's logits. Bad input is one line and exit 2 with the store untouched; a killed pass
and a repaired cross source come back as an uninterrupted pass made them."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from consistency import assert_same_text_same_vector
from pair_support import (
    build_cross_encoder,
    build_pairless_model,
    pair_key_of,
    paraphrase_pairs,
)
from test_guarantees_support import featurize_args, one_line_error, run_cli, tree_digest

import featstore
from featstore.cli import main
from featstore.featurize.encoder import Encoder
from featstore.featurize.pair_encoding import CrossEncoder, longest_first
from featstore.store import keys_for


def _cross_id(store: featstore.Store) -> str:
    return next(k for k, e in store.manifest.encoders.items() if e.kind == "cross")


@pytest.fixture(scope="module")
def pairs_store(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    model = tiny_model_dir("bert")
    df = paraphrase_pairs(60)
    corpus = root / "p.csv"
    df.to_csv(corpus, index=False)
    args = featurize_args(corpus, root / "store", model, "--pair-cols", "a", "b", "--cross",
                          "--json", "--compute-dtype", "float32", "--dtype", "float32")
    code = main(args)
    assert code == 0
    return {"root": root, "store": root / "store", "model": model, "df": df, "corpus": corpus}


def test_pair_corpus_keeps_both_keys_and_encodes_each_text_once(tiny_model_dir, tmp_path,
                                                                capsys):
    model = tiny_model_dir("bert")
    df = paraphrase_pairs(40)
    corpus = tmp_path / "p.csv"
    df.to_csv(corpus, index=False)
    store = tmp_path / "store"
    code, out, err = run_cli(capsys, *featurize_args(corpus, store, model, "--pair-cols", "a",
                                                     "b", "--json"))
    assert code == 0, err
    summary = json.loads(out)
    texts = set(df["a"]) | set(df["b"])
    assert summary["pairs"] == 40 and summary["texts"] == 80
    assert summary["unique"] == len(texts) == summary["new"]  # both columns, each text once
    assert summary["cross_encoder_id"] is None
    s = featstore.open(store)
    table = s.dataset("p")
    assert list(table.columns[:3]) == ["_key", "_key_a", "_key_b"]
    assert table["_key_a"].tolist() == keys_for(df["a"].tolist())
    assert table["_key_b"].tolist() == keys_for(df["b"].tolist())
    assert table["_key"].tolist() == [pair_key_of(a, b) for a, b in zip(df.a, df.b,
                                                                         strict=True)]
    assert s.manifest.datasets["p"].pair_columns == ["a", "b"]
    assert s.datasets()[0]["pair_columns"] == ["a", "b"]
    # the texts are ordinary texts: a text dataset of the same sentences encodes nothing new
    pd.DataFrame({"text": sorted(texts)}).to_csv(tmp_path / "t.csv", index=False)
    code, out, _ = run_cli(capsys, *featurize_args(tmp_path / "t.csv", store, model, "--json"))
    assert json.loads(out)["new"] == 0
    # and another pair file encodes only its unseen texts
    more = pd.DataFrame({"a": [df.a[0], "my new card"], "b": ["bank help please", df.b[1]],
                         "label": [1, 0]})
    more.to_csv(tmp_path / "more.csv", index=False)
    code, out, _ = run_cli(capsys, *featurize_args(tmp_path / "more.csv", store, model,
                                                   "--pair-cols", "a", "b", "--json"))
    assert code == 0 and json.loads(out)["new"] == 2
    before = (store / "manifest.json").read_bytes()
    code, out, _ = run_cli(capsys, *featurize_args(corpus, store, model, "--pair-cols", "a",
                                                   "b", "--json"))
    assert code == 0 and json.loads(out)["new"] == 0
    assert (store / "manifest.json").read_bytes() == before  # a no-op re-run commits nothing


def _bar_ends(err: str) -> list[str]:
    """The last state of each progress bar tqdm drew on stderr: 'desc: done/total'."""
    states = [part.strip() for part in err.replace("\n", "\r").split("\r") if "|" in part]
    return [re.sub(r":\s+\d+%\|.*\|\s*", ": ", s).split(" [")[0] for s in states][-1:]


def test_the_cross_progress_bar_counts_each_pair_beside_its_texts(pairs_store, tmp_path,
                                                                  capsys):
    """A --cross pass encodes texts and then pairs: one bar counts both, and ends full both on
    a first pass and on a re-run that finds everything stored."""
    df = pairs_store["df"].head(12)
    corpus = tmp_path / "p12.csv"
    df.to_csv(corpus, index=False)
    store = tmp_path / "store"
    args = [a for a in featurize_args(corpus, store, pairs_store["model"], "--pair-cols", "a",
                                      "b", "--cross", "--compute-dtype", "float32")
            if a != "--no-progress"]
    for _ in range(2):  # new work, then all stored
        code, _, err = run_cli(capsys, *args)
        assert code == 0, err
        assert _bar_ends(err) == [f"featurize texts+pairs: {3 * 12}/{3 * 12}"]
    code, _, err = run_cli(capsys, *[a for a in args if a != "--cross"])
    assert code == 0 and _bar_ends(err) == [f"featurize: {2 * 12}/{2 * 12}"]


def test_cross_source_is_keyed_by_ordered_pair_and_equals_a_joint_forward(pairs_store):
    s = featstore.open(pairs_store["store"])
    df = pairs_store["df"]
    cross = _cross_id(s)
    fp = s.encoder_entry(cross).fingerprint
    enc = s.resolve_encoder(None, kind="encoder")
    assert fp["kind"] == "cross" and fp["encoder"] == s.encoder_entry(enc).fingerprint
    assert fp["logits"] == 0 and s.encoder_entry(cross).feature_shapes["mean"] == [3, 32]
    keys = [pair_key_of(a, b) for a, b in zip(df.a, df.b, strict=True)]
    assert s.has(cross, keys, ["cls", "mean", "max"]).all()
    got = s.gather(cross, keys[:6], "mean", None)
    # reference: the tokenizer's own pair encoding, one pair at a time, unpadded
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(pairs_store["model"])
    net = AutoModel.from_pretrained(pairs_store["model"]).eval()
    for i, (a, b) in enumerate(zip(df.a[:6], df.b[:6], strict=True)):
        inputs = tok(a, b, return_tensors="pt")
        with torch.inference_mode():
            states = net(**inputs, output_hidden_states=True).hidden_states
        want = np.stack([h[0].mean(0).numpy() for h in states])
        np.testing.assert_allclose(got[i], want, rtol=1e-4, atol=1e-4)
    # (b, a) is another pair: not stored until asked for
    given = set(zip(df.a, df.b, strict=True))
    a, b = next((a, b) for a, b in given if (b, a) not in given)
    assert not s.has(cross, [pair_key_of(b, a)], ["mean"]).any()


def test_pair_windows_are_the_tokenizers_pair_encoding_and_never_cut(tiny_model_dir):
    model = tiny_model_dir("bert")
    enc = Encoder(str(model), device="cpu", compute_dtype="float32")
    cross = CrossEncoder(enc)
    short = [("my card is lost", "i lost my card"), ("a", "b c d")]
    win = cross.windows(short)
    for i, (a, b) in enumerate(short):
        want = enc.tokenizer(a, b)
        assert win.input_ids[i] == want["input_ids"]
        assert win.token_types[i] == want["token_type_ids"]
    long_a = " ".join(["card"] * 90)
    win = cross.windows([(long_a, "my bank")])
    assert len(win.input_ids) > 1 and max(win.lengths) <= enc.max_length
    b_ids = enc.tokenizer("my bank", add_special_tokens=False)["input_ids"]
    for ids, types in zip(win.input_ids, win.token_types, strict=True):
        assert ids[-len(b_ids) - 1:-1] == b_ids  # the short side whole in every window
        assert types.count(1) == len(b_ids) + 1
    covered = sum(ids.count(enc.tokenizer.convert_tokens_to_ids("card"))
                  for ids in win.input_ids)
    assert covered >= 90  # every token of the long side (overlaps count twice)
    both = " ".join(["money"] * 70)
    win = cross.windows([(long_a, both)])  # neither fits in half: windows of both sides
    assert len(win.input_ids) >= 4 and max(win.lengths) <= enc.max_length
    for la in (3, 10, 40):
        for lb in (2, 30, 61):
            for budget in (9, 20, 61):
                na, nb = longest_first(la, lb, budget)
                assert na + nb == min(la + lb, budget) and na <= la and nb <= lb
    enc.truncate = True
    for a, b in ((long_a, both), (both, long_a), (long_a, "my bank"), ("a " * 31, "b " * 31),
                 ("new " * 40, "card " * 28)):
        cut = cross.windows([(a, b)])
        want = enc.tokenizer(a, b, truncation="longest_first", max_length=enc.max_length)
        assert cut.input_ids == [want["input_ids"]], (len(a.split()), len(b.split()))


def test_a_cross_encoders_logits_are_stored(tmp_path, capsys):
    model = build_cross_encoder(tmp_path / "ce", num_labels=3)
    df = paraphrase_pairs(12)
    df.to_csv(tmp_path / "p.csv", index=False)
    store = tmp_path / "store"
    code, out, err = run_cli(capsys, *featurize_args(
        tmp_path / "p.csv", store, model, "--pair-cols", "a", "b", "--cross", "--json",
        "--compute-dtype", "float32", "--dtype", "float32"))
    assert code == 0, err
    s = featstore.open(store)
    cross = _cross_id(s)
    assert s.encoder_entry(cross).fingerprint["logits"] == 3
    assert s.encoder_entry(cross).feature_shapes["logits"] == [3]
    keys = [pair_key_of(a, b) for a, b in zip(df.a[:4], df.b[:4], strict=True)]
    got = s.gather(cross, keys, "logits")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    net = AutoModelForSequenceClassification.from_pretrained(model).eval()
    with torch.inference_mode():
        want = np.stack([net(**tok(a, b, return_tensors="pt")).logits[0].numpy()
                         for a, b in zip(df.a[:4], df.b[:4], strict=True)])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    code, out, _ = run_cli(capsys, "info", "--store", store)
    assert "logits=3" in out and "pairs=a+b" in out


BAD_PAIRS = {
    "missing column": (["--pair-cols", "a", "zz"], "no column 'zz'"),
    "same column twice": (["--pair-cols", "a", "a"], "twice"),
    "numbers, not texts": (["--pair-cols", "a", "score"], "holds numbers, not texts"),
    "one side empty": (["--pair-cols", "a", "gap"], "row 3, column 'gap': empty or missing"),
    "cross without pairs": (["--cross"], "--pair-cols A B"),
    "text column and pairs": (["--pair-cols", "a", "b", "--text-col", "a"], "--text-col"),
    "cross on ray": (["--pair-cols", "a", "b", "--cross", "--engine", "ray"],
                     "local engine"),
}


@pytest.mark.parametrize("case", BAD_PAIRS)
def test_bad_pair_input_is_one_line_exit_2_store_untouched(pairs_store, tmp_path, capsys,
                                                             case):
    flags, message = BAD_PAIRS[case]
    df = paraphrase_pairs(10).assign(gap=lambda d: ["x", "y", None, "z", *["w"] * 6])
    corpus = tmp_path / "bad.csv"
    df.to_csv(corpus, index=False)
    store = pairs_store["store"]
    before = tree_digest(store)
    code, out, err = run_cli(capsys, *featurize_args(corpus, store, pairs_store["model"],
                                                     *flags))
    assert code == 2 and not out
    one_line_error(err)
    assert message in err
    assert tree_digest(store) == before


def test_non_text_values_in_a_jsonl_pair_column_are_refused(pairs_store, tmp_path, capsys):
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text('{"a": "my card", "b": "lost card"}\n{"a": "my card", "b": 7}\n')
    before = tree_digest(pairs_store["store"])
    code, _, err = run_cli(capsys, *featurize_args(corpus, pairs_store["store"],
                                                   pairs_store["model"], "--pair-cols", "a",
                                                   "b"))
    assert code == 2 and "row 2, column 'b': expected text, found a number" in err
    one_line_error(err)
    assert tree_digest(pairs_store["store"]) == before


def test_cross_of_a_model_that_cannot_take_pairs_is_refused(tmp_path, capsys):
    model = build_pairless_model(tmp_path / "joined")
    paraphrase_pairs(6).to_csv(tmp_path / "p.csv", index=False)
    store = tmp_path / "store"
    code, out, err = run_cli(capsys, *featurize_args(tmp_path / "p.csv", store, model,
                                                     "--pair-cols", "a", "b", "--cross"))
    assert code == 2
    one_line_error(err)
    assert "cannot encode pairs jointly" in err and "without --cross" in err
    assert tree_digest(store) == "absent"
    # the advice, followed: the pairs' texts alone
    code, out, err = run_cli(capsys, *featurize_args(tmp_path / "p.csv", store, model,
                                                     "--pair-cols", "a", "b"))
    assert code == 0, err


def _generation(store: Path) -> int:
    try:
        return json.loads((store / "manifest.json").read_text())["generation"]
    except (OSError, ValueError, KeyError):
        return -1


def test_a_killed_pair_pass_resumes_to_what_an_uninterrupted_pass_stores(tiny_model_dir,
                                                                         tmp_path, capsys):
    model = tiny_model_dir("bert")
    rng = np.random.default_rng(3)
    words = ["card", "money", "bank", "transfer", "lost", "refund", "help", "new"]
    rows = [(" ".join(rng.choice(words, size=int(rng.integers(2, 12)))),
             " ".join(rng.choice(words, size=int(rng.integers(2, 12)))), i % 2)
            for i in range(300)]
    corpus = tmp_path / "p.csv"
    pd.DataFrame(rows, columns=["a", "b", "label"]).to_csv(corpus, index=False)
    flags = ["--pair-cols", "a", "b", "--cross", "--shard-rows", "10", "--json",
             "--compute-dtype", "float32"]
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "featstore", *featurize_args(corpus, killed, model, *flags)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while _generation(killed) < 8 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "featurize finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = featstore.open(killed)
    assert partial.verify() == [] and partial.datasets() == []  # the table commits last
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    summary = json.loads(done.stdout)
    assert summary["cross_new"] + summary["cross_cached"] == len({(a, b) for a, b, _ in rows})
    clean = tmp_path / "clean"
    assert main(featurize_args(corpus, clean, model, *flags[:-5], "--compute-dtype",
                               "float32")) == 0
    capsys.readouterr()
    a, b = featstore.open(killed), featstore.open(clean)
    assert a.verify() == [] and a.dataset("p").equals(b.dataset("p"))
    keys = a.dataset("p")["_key"].tolist()
    for f in ("cls", "mean", "max"):
        assert_same_text_same_vector(a.gather(_cross_id(a), keys, f, None),
                                     b.gather(_cross_id(b), keys, f, None), "float32",
                                     f"cross {f} after a kill")
        for side in "ab":
            assert_same_text_same_vector(a.features("p", f, None, side=side),
                                         b.features("p", f, None, side=side), "float32",
                                         f"{f} after a kill")


def test_a_dropped_cross_shard_is_recomputed_by_the_repair_advice(pairs_store, tmp_path,
                                                                  capsys):
    import shutil

    store = tmp_path / "store"
    shutil.copytree(pairs_store["store"], store)
    s = featstore.open(store)
    cross = _cross_id(s)
    keys = s.dataset("p")["_key"].tolist()
    want = {f: s.gather(cross, keys, f, None) for f in ("cls", "mean", "max")}
    shard = store / s.encoder_entry(cross).shards[0].file
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    code, _, err = run_cli(capsys, "verify", "--store", store)
    assert code == 1 and cross in err
    code, out, _ = run_cli(capsys, "repair", "--store", store)
    assert code == 0
    advice = [ln.strip() for ln in out.splitlines() if ln.strip().startswith(f"encoder {cross}")]
    assert len(advice) == 1 and "--pair-cols a b --cross" in advice[0]
    command = shlex.split(advice[0].split(": ", 1)[1])
    assert command[0] == "featurize"
    code, out, err = run_cli(capsys, *command, "--json", "--compute-dtype", "float32")
    assert code == 0, err
    assert json.loads(out)["cross_new"] == len(set(keys))  # exactly the dropped pairs again
    s = featstore.open(store)
    assert s.verify() == []
    for f, v in want.items():
        assert_same_text_same_vector(s.gather(cross, keys, f, None), v, "float32",
                                     f"cross {f} after repair")
