"""LaserVectors end to end on a tiny LASER model in the real file format (offline, CPU)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import torch
from laser_tiny import build_tiny_laser
from laserembeddings import Laser

from featstore.featurize.errors import LaserError
from featstore.featurize.laser import (
    LASER_FILES,
    MISSING_LASER_HINT,
    LaserVectors,
    find_laser_dir,
)

HIDDEN = 8
TEXTS = [
    "The cat sat on the mat.",
    "Reading and writing are fun!",
    "Zürich 42",  # ü is out of vocabulary -> <unk>
    "",
    "the end",
]
BPE_FIRST = "the c@@ at s@@ at on the m@@ at ."  # TEXTS[0] after tokenisation and tiny BPE


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The model is toy-sized: intra-op threads only add wake-up latency on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def laser_dir(tmp_path_factory):
    return build_tiny_laser(tmp_path_factory.mktemp("laser"), dim_hidden=HIDDEN)


@pytest.fixture(scope="module")
def vectors(laser_dir):
    return LaserVectors(laser_dir)


def _reference(laser_dir) -> Laser:
    codes, vocab, encoder = (str(laser_dir / n) for n in LASER_FILES)
    return Laser(bpe_codes=codes, bpe_vocab=vocab, encoder=encoder)


def test_tiny_codes_and_vocab_drive_the_bpe(laser_dir):
    laser = _reference(laser_dir)
    tokens = laser._get_tokenizer("en").tokenize(TEXTS[0])
    assert laser.bpe.encode_tokens(tokens) == BPE_FIRST


def test_matches_laserembeddings(laser_dir, vectors):
    out = vectors.encode(TEXTS)
    expected = _reference(laser_dir).embed_sentences(TEXTS, lang="en")
    assert out.dtype == np.float32 and out.shape == (len(TEXTS), 2 * HIDDEN)
    assert np.isfinite(out).all() and np.abs(out).max() > 1e-3
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)


def test_matches_hand_written_bilstm_maxpool(laser_dir, vectors):
    """Same numbers from plain torch modules: the checkpoint means what LASER says it means."""
    ckpt = torch.load(laser_dir / LASER_FILES[2], map_location="cpu", weights_only=True)
    p, d = ckpt["params"], ckpt["dictionary"]
    embed = torch.nn.Embedding(p["num_embeddings"], p["embed_dim"], padding_idx=p["padding_idx"])
    lstm = torch.nn.LSTM(p["embed_dim"], p["hidden_size"], p["num_layers"], bidirectional=True)
    embed.load_state_dict({"weight": ckpt["model"]["embed_tokens.weight"]})
    lstm.load_state_dict({k[5:]: v for k, v in ckpt["model"].items() if k.startswith("lstm.")})
    ids = [d.get(t, d["<unk>"]) for t in BPE_FIRST.split()]
    ids.append(d["</s>"])
    with torch.no_grad():
        states, _ = lstm(embed(torch.tensor(ids)).unsqueeze(1))
    expected = states.max(dim=0).values.numpy()
    np.testing.assert_allclose(vectors.encode(TEXTS[:1]), expected, rtol=0, atol=1e-5)


def test_dim_comes_from_checkpoint(laser_dir, vectors):
    ckpt = torch.load(laser_dir / LASER_FILES[2], map_location="cpu", weights_only=True)
    assert vectors.dim == 2 * ckpt["params"]["hidden_size"] == 2 * HIDDEN
    wider = build_tiny_laser(laser_dir.parent / "wider", dim_hidden=5)
    assert LaserVectors(wider).dim == 10


def test_identical_texts_same_rows_different_texts_different_rows(vectors):
    out = vectors.encode(["the cat", "a dog ran", "the cat"])
    np.testing.assert_array_equal(out[0], out[2])
    assert np.abs(out[0] - out[1]).max() > 1e-3


def test_batch_equals_one_by_one(vectors):
    batch = vectors.encode(TEXTS)
    singles = np.vstack([vectors.encode([t]) for t in TEXTS])
    np.testing.assert_allclose(batch, singles, rtol=0, atol=1e-5)
    np.testing.assert_allclose(vectors.encode(TEXTS[::-1])[::-1], batch, rtol=0, atol=1e-5)


def test_empty_input(vectors):
    out = vectors.encode([])
    assert out.shape == (0, 2 * HIDDEN) and out.dtype == np.float32


def test_str_input_is_rejected(vectors):
    with pytest.raises(LaserError, match="not a single str"):
        vectors.encode("the cat")


def test_fingerprint(laser_dir, tmp_path):
    copy = shutil.copytree(laser_dir, tmp_path / "copy")
    fp = LaserVectors(copy, lang="en").fingerprint
    json.dumps(fp)
    assert fp["kind"] == "laser" and fp["package"] == "laserembeddings"
    assert fp["package_version"] and fp["lang"] == "en" and fp["dim"] == 2 * HIDDEN
    assert fp["files"] == {
        n: hashlib.sha256((copy / n).read_bytes()).hexdigest() for n in LASER_FILES
    }

    with open(copy / LASER_FILES[1], "a", encoding="utf-8") as fh:
        fh.write("zz@@ 1\n")
    changed = LaserVectors(copy, lang="en").fingerprint
    assert changed != fp
    assert changed["files"][LASER_FILES[1]] != fp["files"][LASER_FILES[1]]
    assert changed["files"][LASER_FILES[2]] == fp["files"][LASER_FILES[2]]


def test_same_seed_same_files(tmp_path):
    a, b = build_tiny_laser(tmp_path / "a"), build_tiny_laser(tmp_path / "b")
    c = build_tiny_laser(tmp_path / "c", seed=1)
    for name in LASER_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / LASER_FILES[2]).read_bytes() != (c / LASER_FILES[2]).read_bytes()


def test_find_laser_dir(laser_dir, tmp_path):
    assert find_laser_dir(tmp_path) is None
    assert find_laser_dir(laser_dir) == laser_dir
    partial = shutil.copytree(laser_dir, tmp_path / "partial")
    (partial / LASER_FILES[0]).unlink()
    assert find_laser_dir(partial) is None
    with pytest.raises(LaserError, match="LASER models not found"):
        LaserVectors(partial)
    assert "download-models" in MISSING_LASER_HINT and "--laser-dir" in MISSING_LASER_HINT


def test_bad_device_is_refused(laser_dir):
    with pytest.raises(LaserError, match="'tpu'"):
        LaserVectors(laser_dir, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(LaserError, match="no CUDA GPU"):
            LaserVectors(laser_dir, device="cuda")


class _Payload:
    """Unpickling this runs os.mkdir(marker): a visible stand-in for arbitrary code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickled_objects_in_checkpoint_are_refused(laser_dir, tmp_path):
    model_dir = shutil.copytree(laser_dir, tmp_path / "evil")
    path = model_dir / LASER_FILES[2]
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    marker = tmp_path / "payload-ran"
    ckpt["extra"] = _Payload(str(marker))
    torch.save(ckpt, path)

    with pytest.raises(LaserError, match="never unpickles"):
        LaserVectors(model_dir)
    assert not marker.exists()

    # Control: the payload is live, so the refusal above is what kept it from running.
    torch.load(path, weights_only=False)
    assert marker.is_dir()
