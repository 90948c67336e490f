"""Soft alignment for pairs (`--pool soft-align`, decomposable attention over token states): the
module equals the attention written out one pair and one token at a time, ignores padding and
gives each text's vector from its partner; a pair head on it is blind to the pair's order when
its row is |u-v| and u*v, learns paraphrases, round-trips through save and load, encodes new
texts' token states, and joins `--auto` exactly when token states are stored. A single text or
a sequence cannot take it, and a store without token states is refused in one line whose
advice, run as written, makes the fit work."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pair_support import follow_token_advice, token_pair_store
from test_guarantees_support import featurize_args

import featstore
from featstore.cli import main
from featstore.heads import HeadClassifier, load_head
from featstore.heads.errors import ParamError
from featstore.heads.pair_estimator import PairClassifier, PairRegressor
from featstore.heads.poolings import SoftAlign, pooling_module
from featstore.selection.candidates import pair_candidates

FAST = {"hidden": 16, "dropout": 0.0, "batch_size": 32, "epochs": 100, "valid_fraction": 0.0}


def _loop_soft_align(m: SoftAlign, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """One text's vector against its partner, token by token (a: [Ta, D], b: [Tb, D])."""
    pa, pb = m.proj(a), m.proj(b)
    rows = []
    for i in range(len(pa)):
        scores = torch.stack([pa[i] @ pb[j] / m.width ** 0.5 for j in range(len(pb))])
        weights = torch.softmax(scores, dim=0)
        match = sum(weights[j] * pb[j] for j in range(len(pb)))
        rows.append(m.compare(torch.cat([pa[i], match, pa[i] - match, pa[i] * match])))
    v = torch.stack(rows)
    return torch.cat([v.mean(0), v.max(0).values])


@pytest.mark.parametrize("seed", range(6))
def test_soft_align_equals_the_attention_written_out_and_ignores_padding(seed):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dim, width, pairs = int(rng.integers(3, 9)), int(rng.integers(2, 7)), int(rng.integers(1, 4))
    m = SoftAlign(dim, width).eval()
    lengths = rng.integers(1, 7, size=2 * pairs)
    t_max = int(lengths.max()) + int(rng.integers(0, 3))  # padding beyond the longest text
    x = torch.randn(2 * pairs, t_max, dim)
    mask = torch.arange(t_max)[None, :] < torch.as_tensor(lengths)[:, None]
    with torch.no_grad():
        got = m(x, mask)
        assert got.shape == (2 * pairs, 2 * width)
        for p in range(pairs):
            a, b = x[p, :lengths[p]], x[pairs + p, :lengths[pairs + p]]
            torch.testing.assert_close(got[p], _loop_soft_align(m, a, b), rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(got[pairs + p], _loop_soft_align(m, b, a), rtol=1e-4,
                                       atol=1e-5)
        noisy = x.clone()
        noisy[~mask] = 1e3  # whatever the padding holds
        torch.testing.assert_close(m(noisy, mask), got)
        # the two halves swapped: each text's vector still comes from its own partner
        swapped = m(torch.cat([x[pairs:], x[:pairs]]), torch.cat([mask[pairs:], mask[:pairs]]))
        torch.testing.assert_close(swapped, torch.cat([got[pairs:], got[:pairs]]))


def test_soft_align_is_built_by_name_with_a_capped_width():
    m = pooling_module("soft-align", 1, 32, 512)
    assert isinstance(m, SoftAlign) and m.width == 128 and m.out_dim == 256
    assert pooling_module("soft-align", 1, 32, 16).out_dim == 32


@pytest.fixture(scope="module")
def token_pairs(tiny_model_dir, tmp_path_factory):
    return token_pair_store(tmp_path_factory.mktemp("softalign"), tiny_model_dir("bert"), seed=5)


def _swapped(rows):
    return rows.rename(columns={"a": "b", "b": "a", "_key_a": "_key_b", "_key_b": "_key_a"})


def test_a_soft_align_classifier_learns_paraphrases_and_round_trips(token_pairs):
    store, train, test = token_pairs["store"], token_pairs["train"], token_pairs["test"]
    clf = PairClassifier("mlp", "soft-align", combine=["absdiff", "product"], layers=[0], **FAST
                         ).fit(store, train)
    proba = clf.predict_proba(store, test)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-6)
    # b reorders a's words for every paraphrase: at the embedding layer each token finds
    # its own word in the other text
    assert clf.score(store, test) >= 0.9
    # |u-v| and u*v of the two soft-aligned vectors: the pair's order cannot matter
    np.testing.assert_allclose(clf.predict_proba(store, _swapped(test)), proba, atol=1e-6)
    clf.save(store, "soft")
    back = load_head(store, "soft")
    np.testing.assert_array_equal(back.predict_proba(store, test), proba)
    assert back.pool == "soft-align" and list(back.combine) == ["absdiff", "product"]


def test_u_and_v_of_soft_aligned_vectors_do_see_the_order(token_pairs):
    store, train, test = token_pairs["store"], token_pairs["train"], token_pairs["test"]
    reg = PairRegressor("mlp", "soft-align", combine=["u", "v"], label_col="score",
                        **FAST).fit(store, train)
    assert not np.allclose(reg.predict(store, _swapped(test)), reg.predict(store, test))


def test_new_texts_are_encoded_with_their_token_states(token_pairs, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(token_pairs["store"].root, root)
    store = featstore.open(root)
    reg = PairRegressor("mlp", "soft-align", combine=["absdiff", "product"], label_col="score",
                        **FAST).fit(store, "para")
    new = [("zebra quartz violin", "violin quartz zebra"), ("zebra quartz", "lantern moss")]
    got = reg.predict(store, new)
    assert got.shape == (2,) and np.isfinite(got).all()
    assert got[0] > got[1]  # the reordering scores as the closer pair
    np.testing.assert_array_equal(reg.predict(store, new), got)


def test_single_texts_and_sequences_cannot_take_soft_align(token_pairs):
    with pytest.raises(ParamError, match="pair"):
        HeadClassifier(pool="soft-align", head="mlp").fit(token_pairs["store"], "para")
    from featstore.heads.kinds import check_sequence_pooling

    with pytest.raises(ParamError, match="pair"):
        check_sequence_pooling("soft-align")


def test_the_search_tries_soft_align_only_where_token_states_are_stored(token_pairs,
                                                                        tmp_path):
    pools = [c.params.get("pool") for c in pair_candidates(token_pairs["store"], "regression")]
    assert pools.count("soft-align") == 1
    cand = next(c for c in pair_candidates(token_pairs["store"], "classification", 2)
                if c.params.get("pool") == "soft-align")
    assert cand.params["combine"] == ["absdiff", "product"] and "symmetric" not in cand.params
    plain = tmp_path / "plain"
    assert main(featurize_args(token_pairs["corpus"], plain, token_pairs["model"],
                               "--pair-cols", "a", "b", "--compute-dtype", "float32")) == 0
    assert "soft-align" not in [c.params.get("pool")
                                for c in pair_candidates(featstore.open(plain), "regression")]


def test_soft_align_without_token_states_is_one_line_whose_advice_works(token_pairs, tmp_path,
                                                                        capsys):
    store = tmp_path / "s"
    follow_token_advice(capsys, token_pairs, store,
                        ("fit-head", "--store", store, "--pool", "soft-align", "--head", "mlp",
                         "--combine", "absdiff", "product", "--epochs", "2", "--out", "s",
                         "--no-progress"), "--pool soft-align")
    assert load_head(store, "s").pool == "soft-align"


@pytest.mark.parametrize("pool,layers,read", [("soft-align", None, [0, 1, 2]),
                                              ("soft-align", [0, 2], [0, 2]),
                                              ("attention", None, [2]),
                                              ("attention", [0, 1], [1])])
def test_soft_align_reads_the_mean_of_its_layers_attention_the_last(token_pairs, pool, layers,
                                                                    read):
    from featstore.heads.inputs import HeadInputs, InputLayout

    store = token_pairs["store"]
    keys = list(dict.fromkeys(token_pairs["train"]._key_a))[:5]
    layout = InputLayout.resolve(store, pool, None, layers, None, [], None)
    assert layout.layers == (layers or ([0, 1, 2] if pool == "soft-align" else [2]))
    got, _ = HeadInputs(layout, pool, False, False, "none").gather(layout, store, keys, "t")
    enc = store.resolve_encoder(None, kind="encoder")
    pos = store.layer_positions(enc, read)
    for g, stored in zip(got, store.gather_ragged(enc, keys, "tokens"), strict=True):
        np.testing.assert_allclose(g, stored[:, pos].astype(np.float32).mean(axis=1),
                                   rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n,batch", [(1, 4), (37, 8), (1000, 16), (2000, 64)])
def test_batches_of_token_rows_group_similar_lengths(n, batch):
    from featstore.heads.training import LENGTH_GROUP, batch_order

    plain = batch_order(n, batch, torch.Generator().manual_seed(3))
    # rows without lengths: the permutation of old, cut in order
    order = torch.randperm(n, generator=torch.Generator().manual_seed(3))
    assert [b.tolist() for b in plain] == [order[s:s + batch].tolist()
                                           for s in range(0, n, batch)]
    lengths = torch.as_tensor(np.random.default_rng(n).integers(1, 70, size=n))
    grouped = batch_order(n, batch, torch.Generator().manual_seed(3), lengths)
    rows = torch.cat(grouped)
    assert sorted(rows.tolist()) == list(range(n))  # every row once per epoch
    assert all(len(b) <= batch for b in grouped)
    padded = sum(len(b) * int(lengths[b].max()) for b in grouped)
    random = sum(len(b) * int(lengths[b].max()) for b in plain)
    if n >= batch * LENGTH_GROUP:  # a full group: batches hold rows of near-equal length
        assert padded < 0.7 * random
    # each batch comes from one group of rows, sorted within it
    for b in grouped:
        assert lengths[b].tolist() == sorted(lengths[b].tolist(), reverse=True)
