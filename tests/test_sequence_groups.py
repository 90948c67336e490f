"""`SequenceClassifier` with scikit-learn's group-aware tools: labels one per row (constant
within a group) and `groups=`, so `GroupKFold` and `cross_val_score` work on rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sequence_support import message_store
from sklearn.model_selection import GroupKFold, cross_val_score

from featstore.heads import HeadError, SequenceClassifier

N_SEQ, LENGTH = 36, 4


@pytest.fixture
def rows(tmp_path):
    n = N_SEQ * LENGTH
    seq = [f"s{i // LENGTH}" for i in range(n)]
    # a sequence's label: the kind of its first message (kinds cycle 0, 1, 2 over the rows)
    label = [f"k{(i // LENGTH * LENGTH) % 3}" for i in range(n)]
    store, texts, _ = message_store(tmp_path / "s", n_messages=n,
                                    columns={"seq": seq, "turn": [i % LENGTH for i in range(n)],
                                             "label": label})
    table = store.dataset("messages")
    return tmp_path / "s", table


def test_cross_val_score_with_group_k_fold_on_rows(rows):
    root, table = rows
    X = table.drop(columns=["label"])
    y, groups = table["label"].to_numpy(), table["seq"].to_numpy()
    clf = SequenceClassifier("last", group_by="seq", order_by="turn", store=str(root), C=1.0)
    scores = cross_val_score(clf, X, y, groups=groups, cv=GroupKFold(3))
    manual = []
    for tr, te in GroupKFold(3).split(X, y, groups):
        fitted = SequenceClassifier("last", group_by="seq", order_by="turn", store=str(root),
                                    C=1.0).fit(X.iloc[tr], y[tr])
        pred = fitted.predict(X.iloc[te])
        gold = pd.Series(y[te]).groupby(groups[te], sort=False).first().to_numpy()
        manual.append(float(np.mean(pred == gold)))
    assert np.allclose(scores, manual)
    assert scores.mean() > 0.9  # with 4 messages, the last one is of the first one's kind


def test_texts_with_groups_fit_as_rows_with_a_group_column(rows):
    root, table = rows
    y, groups = table["label"].to_numpy(), table["seq"].to_numpy()
    by_rows = SequenceClassifier("mean", group_by="seq", store=str(root), C=1.0).fit(
        table.drop(columns=["label"]), y)
    by_texts = SequenceClassifier("mean", group_by="seq", store=str(root), C=1.0).fit(
        table["text"].tolist(), y, groups=groups)
    a = by_rows.predict_proba(table.drop(columns=["label"]))
    b = by_texts.predict_proba(table["text"].tolist(), groups=groups)
    assert a.shape == (N_SEQ, 3) and np.allclose(a, b)
    table_out = by_texts.predict_table(table["text"].tolist(), groups=groups)
    assert table_out["seq"].tolist() == [f"s{i}" for i in range(N_SEQ)]


def test_per_row_labels_must_be_constant_within_a_group(rows):
    root, table = rows
    y = table["label"].to_numpy().copy()
    y[5] = "k9"  # row 5 is in group s1
    clf = SequenceClassifier("mean", group_by="seq", store=str(root), C=1.0)
    with pytest.raises(HeadError, match="'s1'"):
        clf.fit(table.drop(columns=["label"]), y)
    with pytest.raises(HeadError, match="rows but 3 labels"):
        clf.fit(table.drop(columns=["label"]), ["k0", "k1", "k2"])
    with pytest.raises(HeadError, match="groups= gives 2 group values"):
        clf.fit(table["text"].tolist(), table["label"].to_numpy(), groups=["s0", "s1"])
