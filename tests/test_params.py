"""Each parameter is declared once (featstore.heads.params): estimator signatures, validation,
the command line's flags and the saved config all come from the declarations, and a parameter
error is a ValueError in the library's words that the command line words with its flags."""

from __future__ import annotations

import inspect
import json

import pytest
from test_guarantees_support import run_cli
from test_heads_support import toy_store

from featstore.cli.flags import OneLineParser, add_param_flags, given_params
from featstore.heads import HeadClassifier, HeadEnsemble, HeadRegressor, ParamError, load_head
from featstore.heads.errors import HeadError
from featstore.heads.params import (
    DECLARED,
    HEAD_ENSEMBLE,
    HEAD_SELECTOR,
    INT,
    SEQUENCE_HEAD,
    STORED_VECTORS,
    TEXT_HEAD,
    Param,
)
from featstore.heads.sequence_estimator import SequenceClassifier
from featstore.heads.text_vectors import StoredVectors
from featstore.selection.auto import HeadSelector

WARMUP = Param("warmup", INT, 0, "epochs of linear warm-up before the cosine schedule", low=0)


class WithWarmup(HeadClassifier):
    """A per-text classifier that takes one parameter more, declared in one place."""

    params = HeadClassifier.params.plus(WARMUP)


def test_a_parameter_declared_in_one_place_is_validated_offered_and_saved(tmp_path, capsys):
    # the signature, get_params and validation
    assert "warmup" in inspect.signature(WithWarmup.__init__).parameters
    assert WithWarmup(warmup=2).get_params()["warmup"] == 2
    with pytest.raises(ParamError, match="^warmup must be at least 0, got -1$"):
        WithWarmup(warmup=-1).validate_params()
    with pytest.raises(ValueError, match="warmup must be an integer, got 'x'"):
        WithWarmup(warmup="x").validate_params()
    # the command line: the flag, its check (one line, exit 2) and the parameter it gives
    parser = OneLineParser(prog="fit")
    add_param_flags(parser, WithWarmup.params)
    with pytest.raises(SystemExit) as done:
        parser.parse_args(["--warmup", "-1"])
    assert done.value.code == 2
    assert capsys.readouterr().err.strip() == \
        "error: argument --warmup: must be at least 0, got -1 (see fit --help)"
    args = parser.parse_args(["--warmup", "3", "--pool", "mean-max"])
    assert given_params(args, WithWarmup.params) == {"warmup": 3, "pool": "mean-max"}
    # the saved config, and back
    store, _, _ = toy_store(tmp_path / "s")
    head = WithWarmup(**given_params(args, WithWarmup.params), C=1.0).fit(store, "toy")
    path = head.save(store, "warm")
    assert json.loads((path / "head.json").read_text())["config"]["warmup"] == 3
    assert WithWarmup.load(store, "warm").warmup == 3


def test_every_estimator_takes_exactly_its_declared_parameters():
    for cls, params in ((HeadClassifier, TEXT_HEAD), (HeadRegressor, TEXT_HEAD),
                        (SequenceClassifier, SEQUENCE_HEAD), (HeadEnsemble, HEAD_ENSEMBLE),
                        (HeadSelector, HEAD_SELECTOR), (StoredVectors, STORED_VECTORS)):
        signature = inspect.signature(cls.__init__).parameters
        assert list(signature)[1:] == params.names, cls.__name__
        assert {n: p.default for n, p in signature.items() if n != "self"} == \
            params.defaults(), cls.__name__
        assert set(params.names) <= set(DECLARED), cls.__name__
    # one declaration each, however many estimators take it
    assert TEXT_HEAD["dropout"].help == SEQUENCE_HEAD["dropout"].help
    assert (TEXT_HEAD["dropout"].default, SEQUENCE_HEAD["dropout"].default) == (0.5, 0.3)


def test_parameter_errors_are_value_errors_in_library_words_and_flags_on_the_cli(tmp_path,
                                                                                capsys):
    cases = [(HeadClassifier(fuse_mode="x"), "unknown fuse_mode 'x'; choose one of: concat, "
              "project", ["--fuse-mode", "x"], "unknown --fuse-mode 'x'"),
             (HeadClassifier(head="mlp", lr=-1), "lr must be positive, got -1", ["--lr", "-1"],
              "--lr: must be positive, got -1"),
             (HeadRegressor(head="logreg"), "head=logreg is a classifier; use head=linear or mlp "
              "for task=regression", ["--head", "logreg", "--task", "regression",
                                      "--label-col", "score"],
              "--head logreg is a classifier; use --head linear or mlp for --task regression"),
             (HeadClassifier(pool="lstm", head="logreg"), "pool=lstm is trained with the head",
              ["--pool", "lstm", "--head", "logreg"], "--pool lstm is trained with the head")]
    store, _, texts = toy_store(tmp_path / "s")
    df = store.dataset("toy")
    from featstore.store import StoreWriter

    with StoreWriter(tmp_path / "s") as w:
        import pyarrow as pa

        w.commit_dataset("scored", pa.table({"_key": df["_key"], "text": df["text"],
                                             "score": [float(i) for i in range(len(df))]}),
                         text_column="text", source="x", encoders=["enc-toy"], skipped=0)
    for head, library, argv, command_line in cases:
        with pytest.raises(ValueError) as info:
            head.validate_params()
        assert isinstance(info.value, HeadError) and str(info.value).startswith(library)
        train = ["--train", "scored"] if "regression" in argv else []
        code, _, err = run_cli(capsys, "fit-head", "--store", tmp_path / "s", *train, *argv,
                               "--no-progress")
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and command_line in lines[0], err


def test_a_typed_value_equal_to_the_per_text_default_reaches_a_sequence_head(tmp_path, capsys):
    """--batch-size 256 is the per-text default and not the sequence heads' (64): typed with
    --group-by, it is what the sequence head trains with."""
    from sequence_support import conversation_store

    conversation_store(tmp_path / "s")
    code, out, err = run_cli(capsys, "fit-head", "--store", tmp_path / "s", "--group-by", "seq",
                             "--seq-head", "gru", "--epochs", "2", "--batch-size", "256",
                             "--cv", "3", "--out", "g", "--no-progress")
    assert code == 0, err
    assert load_head(tmp_path / "s", "g").batch_size == 256
    code, out, err = run_cli(capsys, "fit-head", "--store", tmp_path / "s", "--group-by", "seq",
                             "--seq-head", "gru", "--epochs", "2", "--cv", "3", "--out", "d",
                             "--no-progress")
    assert code == 0, err
    assert load_head(tmp_path / "s", "d").batch_size == SEQUENCE_HEAD["batch_size"].default
