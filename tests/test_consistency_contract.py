"""The consistency contract end to end: the same texts featurized from the command line and from
Python, in other orders and batches, in float32 and in bfloat16 (forced on any CPU), agree within
the stated bounds, with each other and with an unpadded float32 forward of the stock model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from consistency import COMPUTE_DTYPES, assert_near_reference, assert_same_text_same_vector
from test_featurize_equivalence import TEXTS, reference

import featstore
from featstore.cli import main
from featstore.featurize.precision import (
    BETWEEN_RUNS,
    TO_REFERENCE,
    Bound,
    between_runs,
    deviation,
)

FEATURES = ("cls", "mean", "max")


def _features(store_dir, texts) -> dict[str, np.ndarray]:
    store = featstore.open(store_dir)
    return {f: store.features(texts, f, None) for f in FEATURES}


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory) -> dict:
    """Per compute dtype: a CLI run over the texts, a Python run over them reversed in small
    batches; and the float32 reference."""
    model = tiny_model_dir("roberta")
    root = tmp_path_factory.mktemp("contract")
    corpus = root / "c.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(corpus, index=False)
    out: dict = {"reference": reference(model, TEXTS)}
    for compute in COMPUTE_DTYPES:
        cli = root / f"cli-{compute}"
        assert main(["featurize", str(corpus), "--store", str(cli), "--model", str(model),
                     "--no-laser", "--no-progress", "--compute-dtype", compute]) == 0
        py = featstore.open(root / f"py-{compute}", create=True)
        summary = py.featurize(TEXTS[::-1], model=str(model), compute_dtype=compute,
                               batch_tokens=24, shard_rows=5)
        assert summary["compute_dtypes"] == {compute: len(TEXTS)}
        out[compute] = (_features(cli, TEXTS), _features(py.root, TEXTS))
    return out


@pytest.mark.parametrize("compute", COMPUTE_DTYPES)
def test_command_line_and_python_agree_within_the_contract(runs, compute):
    cli, py = runs[compute]
    assert_same_text_same_vector(py, cli, compute, "Python vs CLI")
    for f in FEATURES:
        assert_near_reference(cli[f], runs["reference"][f], compute, f"CLI {f}")
        assert_near_reference(py[f], runs["reference"][f], compute, f"Python {f}")


def test_float32_and_bfloat16_rows_of_one_store_agree_within_the_looser_bound(runs):
    bound = between_runs("float32", "bfloat16")
    assert bound == between_runs("bfloat16", "float32") == BETWEEN_RUNS["bfloat16"]
    for f in FEATURES:
        dev = deviation(runs["float32"][0][f], runs["bfloat16"][0][f])
        assert dev.within(bound), f"{f}: {dev}"
        assert dev.max_error > 0  # bfloat16 really computed something else


def test_bounds_are_consistent_and_deviation_measures_what_they_say():
    for d in COMPUTE_DTYPES:
        ref, runs_ = TO_REFERENCE[d], BETWEEN_RUNS[d]
        # two computations each within the reference bound are within twice of it
        assert runs_.max_error >= 2 * ref.max_error - 1e-12
        assert runs_.min_cosine <= 2 * ref.min_cosine ** 2 - 1 + 1e-12
    a = np.array([[[1.0, 0.0], [2.0, 2.0]], [[0.5, 0.5], [-4.0, 0.0]]])  # [rows, layers, hidden]
    b = a.copy()
    b[1, 1, 0] += 0.04  # layer 1's largest |value| is 4: a 1% error
    dev = deviation(a, b)
    assert dev.max_error == pytest.approx(0.01)
    assert dev.min_cosine == pytest.approx(float(np.dot(a[1, 1], b[1, 1])
                                                 / np.linalg.norm(a[1, 1])
                                                 / np.linalg.norm(b[1, 1])))
    assert dev.within(Bound(0.0101, 0.99)) and not dev.within(Bound(0.0099, 0.99))
    assert deviation(a[:, 0], a[:, 0]).max_error == 0.0  # [rows, hidden] works too
    with pytest.raises(ValueError, match="shapes differ"):
        deviation(a, a[:1])
