"""featstore in scikit-learn: estimators and a transformer over raw texts, texts the store lacks
featurized on the fly; Pipeline, cross_val_score, GridSearchCV, clone; the Python featurize API;
numpy-backed dataset columns."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

import featstore
from featstore.heads import (
    HeadClassifier,
    HeadEnsemble,
    HeadRegressor,
    SequenceClassifier,
    StoredVectors,
)
from featstore.selection.auto import HeadSelector
from featstore.store import keys_for

WORDS = {"cards": ["card", "lost", "stolen", "new"], "money": ["money", "transfer", "refund",
                                                               "balance"]}


def corpus(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = ["cards", "money"][i % 2]
        texts.append(f"my {' '.join(rng.choice(WORDS[label], 3))} please {i}")
        labels.append(label)
    return texts, labels


@pytest.fixture
def store(tiny_model_dir, tmp_path):
    """A store whose encoder is a tiny BERT; it holds only the first 20 texts."""
    s = featstore.open(tmp_path / "s", create=True)
    texts, _ = corpus(20, seed=1)
    s.featurize(texts, model=str(tiny_model_dir("bert")))
    return s


def test_store_featurize_from_python(store):
    texts, labels = corpus(30, seed=2)
    enc = store.resolve_encoder()
    summary = store.featurize(pd.DataFrame({"text": texts, "label": labels}), name="frame")
    assert summary["dataset"] == "frame" and summary["new"] == 30
    assert store.has(enc, keys_for(texts), ["mean"]).all()  # the handle was refreshed
    table = store.dataset("frame")
    assert table["label"].tolist() == labels
    assert type(table["label"].values) is np.ndarray and table["label"].dtype == object
    idx = np.array([3, 0])
    assert list(table["label"].values[idx]) == [labels[3], labels[0]]  # numpy indexing works
    again = store.featurize(pd.DataFrame({"text": texts, "label": labels}), name="frame")
    assert again["new"] == 0
    with pytest.raises(featstore.FeatstoreError, match="replace=True"):
        store.featurize(pd.DataFrame({"text": texts[:3], "label": labels[:3]}), name="frame")


def test_classifier_on_raw_texts_in_scikit_learn(store):
    texts, labels = corpus(60, seed=3)
    assert is_classifier(HeadClassifier()) and is_regressor(HeadRegressor())
    clf = HeadClassifier(store=store.root, pool="mean", head="logreg", C=1.0)
    scores = cross_val_score(clf, texts, labels, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.8
    x_tr, x_te, y_tr, y_te = train_test_split(texts, labels, test_size=0.3, random_state=0,
                                              stratify=labels)
    fitted = clone(clf).fit(x_tr, y_tr)
    assert list(fitted.classes_) == ["cards", "money"]
    pred = fitted.predict(x_te)
    assert (pred == np.array(y_te)).mean() == fitted.score(x_te, y_te) > 0.8
    grid = GridSearchCV(clf, {"C": [0.1, 10.0], "pool": ["mean", "max"]}, cv=2)
    grid.fit(pd.Series(x_tr), np.array(y_tr))
    assert set(grid.best_params_) == {"C", "pool"} and grid.score(x_te, y_te) > 0.8


def test_stored_vectors_in_a_pipeline(store):
    texts, labels = corpus(60, seed=4)
    vec = StoredVectors(store=store, pool="mean-max", layers=[1, 2])
    pipe = make_pipeline(vec, StandardScaler(), LogisticRegression())
    assert pipe.fit(texts[:40], labels[:40]).score(texts[40:], labels[40:]) > 0.8
    frame = StoredVectors(store=store, pool="mean").set_output(transform="pandas") \
        .fit_transform(texts[:5])
    assert list(frame.columns[:2]) == ["mean_l2_0", "mean_l2_1"] and frame.shape == (5, 32)
    enc = store.resolve_encoder()
    np.testing.assert_array_equal(frame.to_numpy(),
                                  store.gather(enc, keys_for(texts[:5]), "mean", -1)
                                  .astype(np.float32))


def test_fit_on_an_empty_store_uses_the_encoder_parameter(tiny_model_dir, tmp_path):
    texts, labels = corpus(40, seed=5)
    path = tmp_path / "fresh"
    featstore.open(path, create=True)
    clf = HeadClassifier(store=path, encoder=str(tiny_model_dir("bert")), C=1.0)
    assert clf.fit(texts, labels).score(texts, labels) > 0.8
    assert featstore.open(path).sources()[0]["rows"] == 40


# scikit-learn's data checks feed numeric matrices to fit; featstore estimators read texts (or
# keys) of a store, so those do not apply. These are the ones that do:
APPLICABLE = {"check_estimator_cloneable", "check_estimator_tags_renamed",
              "check_valid_tag_types", "check_estimator_repr", "check_no_attributes_set_in_init",
              "check_do_not_raise_errors_in_init_or_set_params", "check_mixin_order",
              "check_parameters_default_constructible", "check_get_params_invariance",
              "check_set_params", "check_estimators_unfitted"}


@pytest.mark.parametrize("estimator", [HeadClassifier(), HeadRegressor(), StoredVectors()],
                         ids=lambda e: type(e).__name__)
def test_scikit_learn_estimator_checks_that_apply(estimator):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(estimator, on_fail=None)
    ran = {r["check_name"]: r["status"] for r in results if r["check_name"] in APPLICABLE}
    assert ran and all(status == "passed" for status in ran.values()), ran


# The common checks each estimator is exempt from, with the reason. featstore estimators read the
# texts, keys or a dataset of a store (`store=` or `fit(store, data)`); these checks fit them on
# numeric arrays instead, so their first fit already fails for a reason that is not theirs.
NUMERIC = "fits on a numeric array; featstore estimators read texts or keys of a store"
SKIPPED = {
    "check_complex_data": NUMERIC, "check_dict_unchanged": NUMERIC,
    "check_dont_overwrite_parameters": NUMERIC, "check_dtype_object": NUMERIC,
    "check_estimator_sparse_array": NUMERIC + " (and sparse input has no place there)",
    "check_estimator_sparse_matrix": NUMERIC + " (and sparse input has no place there)",
    "check_estimator_sparse_tag": NUMERIC + " (and sparse input has no place there)",
    "check_estimators_dtypes": NUMERIC, "check_estimators_empty_data_messages": NUMERIC,
    "check_estimators_fit_returns_self": NUMERIC, "check_estimators_nan_inf": NUMERIC,
    "check_estimators_overwrite_params": NUMERIC,
    "check_estimators_pickle": NUMERIC + "; heads are saved as safetensors + JSON, never "
                                         "pickled (save/load)",
    "check_f_contiguous_array_estimator": NUMERIC, "check_fit1d": NUMERIC,
    "check_fit2d_1feature": NUMERIC, "check_fit2d_1sample": NUMERIC,
    "check_fit2d_predict1d": NUMERIC, "check_fit_check_is_fitted": NUMERIC,
    "check_fit_idempotent": NUMERIC, "check_fit_score_takes_y": NUMERIC,
    "check_methods_sample_order_invariance": NUMERIC,
    "check_methods_subset_invariance": NUMERIC, "check_n_features_in": NUMERIC,
    "check_n_features_in_after_fitting": NUMERIC,
    "check_non_transformer_estimators_n_iter": NUMERIC,
    "check_pipeline_consistency": NUMERIC, "check_positive_only_tag_during_fit": NUMERIC,
    "check_readonly_memmap_input": NUMERIC, "check_requires_y_none": NUMERIC,
    "check_supervised_y_2d": NUMERIC, "check_supervised_y_no_nan": NUMERIC,
    "check_classifier_data_not_an_array": NUMERIC, "check_classifiers_classes": NUMERIC,
    "check_classifiers_train": NUMERIC,
    "check_classifiers_one_label": NUMERIC + "; one class is refused in one line (HeadError)",
    "check_classifiers_regression_target": NUMERIC,
    "check_regressor_data_not_an_array": NUMERIC, "check_regressors_int": NUMERIC,
    "check_regressors_no_decision_function": NUMERIC, "check_regressors_train": NUMERIC,
    "check_transformer_data_not_an_array": NUMERIC, "check_transformer_general": NUMERIC,
    "check_transformer_preserve_dtypes": NUMERIC,
}
EVERY_ESTIMATOR = [HeadClassifier(), HeadRegressor(), StoredVectors(), SequenceClassifier(),
                   HeadEnsemble(), HeadSelector()]


@pytest.mark.parametrize("estimator", EVERY_ESTIMATOR, ids=lambda e: type(e).__name__)
def test_every_estimator_passes_scikit_learn_common_checks_but_the_skipped(estimator):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(estimator, expected_failed_checks=SKIPPED, on_fail=None)
    failed = {r["check_name"]: str(r["exception"])[:200] for r in results
              if r["status"] == "failed"}
    passed = {r["check_name"] for r in results if r["status"] == "passed"}
    assert not failed, failed
    assert {"check_estimators_unfitted", "check_get_params_invariance", "check_set_params",
            "check_parameters_default_constructible"} <= passed
