"""A model that cannot be had is one line, said at once: a mistyped local directory, a hub id
with HF_HUB_OFFLINE set and nothing cached, a hub that cannot be reached."""

from __future__ import annotations

import pandas as pd
import pytest

from featstore.cli import main


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "c.csv"
    pd.DataFrame({"text": ["a text"]}).to_csv(path, index=False)
    return path


def refusal(args, capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0]
    return err[0]


def test_a_mistyped_local_directory(tmp_path, corpus, capsys):
    line = refusal(["featurize", "--store", str(tmp_path / "s"), "--model",
                    "./models/minilm-typo", "--no-progress", str(corpus)], capsys)
    assert "no model directory ./models/minilm-typo" in line
    assert not (tmp_path / "s").exists()


def test_a_hub_id_offline_and_not_cached(tmp_path, corpus, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    line = refusal(["featurize", "--store", str(tmp_path / "s"), "--model",
                    "some-org/some-model", "--no-progress", str(corpus)], capsys)
    assert "not in the local Hugging Face cache" in line and "HF_HUB_OFFLINE" in line
    assert "bundled all-MiniLM-L6-v2" in line


def test_a_hub_that_cannot_be_reached(tmp_path, corpus, capsys, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    line = refusal(["featurize", "--store", str(tmp_path / "s"), "--model",
                    "some-org/some-model", "--no-progress", str(corpus)], capsys)
    assert "cannot reach the Hugging Face hub" in line
    assert "HF_HUB_OFFLINE=1" in line and "local model directory" in line
