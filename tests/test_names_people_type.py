"""Names people type: an encoder by its short model name wherever that is unambiguous (and
refused with the candidates where it is not), default head names that carry the fusion, and a
`heads list` that shows encoder, fusion and ensembles in words."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from test_heads_support import HIDDEN, LAYERS, make_features, toy_store

import featstore
from featstore.cli import main
from featstore.heads import HeadEnsemble
from featstore.store import StoreWriter, keys_for


def add_encoder(root: Path, model: str, encoder_id: str, seed: int = 1) -> None:
    """A second encoder over the toy dataset's texts, computed from `model`."""
    store = featstore.open(root)
    table = store.dataset("toy")
    y = np.array([int(v[1:]) for v in table["label"]])
    feats = make_features(y, np.random.default_rng(seed))
    fp = {"kind": "encoder", "model": model, "layers": LAYERS, "hidden": HIDDEN}
    with StoreWriter(root) as w:
        w.ensure_encoder(encoder_id, fp, "float16", {k: list(v.shape[1:]) for k, v in
                                                    feats.items()})
        w.commit_shard(encoder_id, w.write_shard_file(encoder_id, table["_key"].tolist(),
                                                      feats))


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_an_encoder_is_named_by_its_short_model_name(tmp_path, capsys):
    root = tmp_path / "s"
    toy_store(root, n=90, model="/models/all-MiniLM-L6-v2")
    add_encoder(root, "/models/all-mpnet-base-v2", "mpnet-1")
    store = featstore.open(root)
    assert store.resolve_encoder("all-mpnet-base-v2") == "mpnet-1"
    assert store.resolve_encoder("ALL-MINILM-L6-V2") == "enc-toy"  # any case
    assert store.features("toy", "mean", encoder="all-mpnet-base-v2").shape == (90, HIDDEN)
    s = ["--store", str(root), "--C", "1", "--no-progress"]
    code, out, err = run(["fit-head", *s, "--model", "all-mpnet-base-v2", "--fuse",
                          "all-MiniLM-L6-v2", "--json"], capsys)
    assert code == 0, err
    fused = json.loads(out)
    assert fused["encoder"] == "mpnet-1"
    # the default name carries the encoder named and the fusion: no collision with the plain
    assert fused["head"] == "toy-mean-logreg-all-mpnet-base-v2-fuse-all-MiniLM-L6-v2"
    code, out, err = run(["fit-head", *s, "--model", "all-MiniLM-L6-v2", "--json"], capsys)
    assert code == 0 and json.loads(out)["head"] == "toy-mean-logreg-all-MiniLM-L6-v2", err
    code, out, err = run(["heads", "list", "--store", str(root), "--json"], capsys)
    rows = {r["name"]: r for r in json.loads(out)}
    fused_row = rows["toy-mean-logreg-all-mpnet-base-v2-fuse-all-MiniLM-L6-v2"]
    assert fused_row["encoder"] == "all-mpnet-base-v2" and fused_row["fuse"] == ["all-MiniLM-L6-v2"]
    assert fused_row["description"] == "mean + logreg, fused with all-MiniLM-L6-v2 (concat)"
    code, out, err = run(["heads", "list", "--store", str(root)], capsys)
    header = out.splitlines()[0].split()
    assert header[:6] == ["name", "task", "pool", "head", "encoder", "fuse"]


def test_an_ambiguous_short_name_is_refused_with_the_candidates(tmp_path, capsys):
    root = tmp_path / "s"
    toy_store(root, n=60, model="/a/encoder")
    add_encoder(root, "/b/encoder", "enc-b")
    code, out, err = run(["fit-head", "--store", str(root), "--model", "encoder", "--C", "1",
                          "--no-progress"], capsys)
    assert code == 2 and "matches several encoders (enc-b, enc-toy)" in err
    assert "name one by id" in err
    code, out, err = run(["fit-head", "--store", str(root), "--model", "enc-b", "--C", "1",
                          "--no-progress", "--json"], capsys)
    assert code == 0 and json.loads(out)["encoder"] == "enc-b"  # the advice, followed


def test_featurize_takes_a_stored_models_short_name(tiny_model_dir, tmp_path, capsys):
    model = shutil.copytree(tiny_model_dir("bert"), tmp_path / "models" / "tiny-bert")
    texts = ["my card is lost", "refund my money", "a new card please"]
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame({"text": ["the bank transfer"]}).to_csv(tmp_path / "b.csv", index=False)
    root = tmp_path / "s"
    assert run(["featurize", "--store", str(root), "--model", str(model), "--no-laser",
                "--no-progress", str(tmp_path / "a.csv")], capsys)[0] == 0
    code, out, err = run(["featurize", "--store", str(root), "--model", "tiny-bert",
                          "--no-laser", "--no-progress", "--json", str(tmp_path / "b.csv")],
                         capsys)
    assert code == 0, err
    summary = json.loads(out)
    sources = featstore.open(root).sources()
    assert len(sources) == 1 and summary["encoder_id"] == sources[0]["id"]
    assert summary["new"] == 1 and sources[0]["rows"] == 4
    assert set(keys_for(["the bank transfer"])) <= set(
        featstore.open(root).index(sources[0]["id"], "mean"))


def test_heads_list_describes_an_ensemble(tmp_path, capsys):
    root = tmp_path / "s"
    store, _, _ = toy_store(root, n=90)
    ens = HeadEnsemble([{"pool": "mean", "head": "logreg", "C": 1.0},
                        {"pool": "cls", "head": "logreg", "C": 1.0}], [2, 1]).fit(store, "toy")
    ens.save(store, "mix")
    code, out, _ = run(["heads", "list", "--store", str(root)], capsys)
    lines = out.splitlines()
    assert lines[2].split()[:5] == ["mix", "classification", "mean,", "cls", "ensemble"]
    assert "mix: ensemble of 2: 0.67 mean + logreg; 0.33 cls + logreg" in lines
