"""Top-N engine: list properties, parity with the model contract, filters and cold start."""
from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
import torch

from recsys.config import ScoreConfig
from recsys.models import Interactions
from recsys.models.bundle import ModelBundle
from recsys.score.engine import write_topn
from recsys.score.topn import (
    FactorizedScorer,
    FullScorer,
    RerankScorer,
    block_mask_coords,
)
from tests.score.conftest import PROV, fit_bundle, make_data


def run(bundle, data, tmp_path, **opts):
    options = ScoreConfig(**{"top_n": 4, "block_size": 5, **opts})
    summary = write_topn(bundle, data, PROV, tmp_path, options)
    return pq.read_table(tmp_path).to_pandas(), summary


def seen_pairs(data):
    inter = data.interactions
    return set(zip(data.user_ids[inter.user_idx], data.item_ids[inter.item_idx]))


def test_block_mask_coords_gathers_rows_and_maps_columns():
    m = sp.csr_matrix(np.array([[1, 0, 1], [0, 0, 0], [0, 1, 1]], np.float32))
    r, c = block_mask_coords(m.indptr, m.indices, np.array([2, 0, 1]))
    assert list(zip(r, c)) == [(0, 1), (0, 2), (1, 0), (1, 2)]
    # Column 1 is not scored (-1): its entries go; column 2 is scored column 0.
    r, c = block_mask_coords(m.indptr, m.indices, np.array([2, 0]), np.array([1, -1, 0]))
    assert list(zip(r, c)) == [(0, 0), (1, 1), (1, 0)]


def test_every_user_gets_n_ranked_unseen_items_sorted_by_user(data, bundle, tmp_path):
    df, summary = run(bundle, data, tmp_path)
    assert summary["users_model"] == 12 and summary["rows"] == 48
    assert df.groupby("user_id").size().eq(4).all()
    assert list(df["user_id"]) == sorted(df["user_id"])
    assert df.groupby("user_id")["rank"].apply(list).map(lambda r: r == [1, 2, 3, 4]).all()
    assert not seen_pairs(data) & set(zip(df.user_id, df.item_id))
    diffs = df.groupby("user_id")["score"].diff().dropna()
    assert (diffs <= 0).all()
    assert set(df["source"]) == {"model"} and set(df["model_version"]) == {"3"}


def test_matches_model_recommend(data, bundle, tmp_path):
    df, _ = run(bundle, data, tmp_path)
    items, _ = bundle.model.recommend(np.arange(12), 4)
    for u in range(12):
        got = df[df.user_id == data.user_ids[u]].sort_values("rank")["item_id"].tolist()
        assert got == list(data.item_ids[items[u]])


def test_block_size_does_not_change_the_result(data, bundle, tmp_path):
    a, _ = run(bundle, data, tmp_path / "a", block_size=1)
    b, _ = run(bundle, data, tmp_path / "b", block_size=1000)
    assert a.equals(b)


def test_unavailable_items_are_never_recommended(data, bundle, tmp_path):
    available = np.ones(9, bool)
    available[[1, 4, 8]] = False
    df, _ = run(bundle, dataclasses.replace(data, item_available=available), tmp_path, top_n=3)
    assert not {"i01", "i04", "i08"} & set(df["item_id"])
    assert df.groupby("user_id").size().eq(3).all()  # 9 items - 3 unavailable - 3 seen >= 3


def test_fewer_candidates_than_n_gives_a_shorter_list(data, bundle, tmp_path):
    df, _ = run(bundle, data, tmp_path, top_n=8)  # 9 items, 3 seen each: 6 left
    assert df.groupby("user_id").size().eq(6).all()
    assert df["rank"].max() == 6


def test_user_without_history_gets_popular_items(tmp_path):
    base = make_data(n_users=6, n_items=5, per_user=2)
    inter = dataclasses.replace(base.interactions, n_users=7)  # user 6 never interacted
    data = dataclasses.replace(base, interactions=inter, user_ids=np.append(base.user_ids, "zz-new"))
    bundle = fit_bundle(base)
    df, summary = run(bundle, data, tmp_path, top_n=2)
    cold = df[df.user_id == "zz-new"]
    assert summary["users_popular"] == 1 and set(cold["source"]) == {"popular"}
    counts = np.bincount(inter.item_idx, minlength=5)
    expected = data.item_ids[np.lexsort((np.arange(5), -counts))[:2]]
    assert cold["item_id"].tolist() == list(expected)
    assert cold["score"].tolist() == sorted(counts, reverse=True)[:2]


@pytest.mark.parametrize("fold_in", [True, False])
def test_user_unknown_to_the_model_is_folded_in_else_gets_popular_items_minus_seen(tmp_path, fold_in):
    data = make_data(n_users=6, n_items=5, per_user=2)
    bundle = fit_bundle(data)
    # The model never saw u00 (as if trained on an older day): drop it from the bundle's ids.
    bundle = ModelBundle(bundle.model, np.where(bundle.user_ids == "u00", "gone", bundle.user_ids),
                         bundle.item_ids)
    options = ScoreConfig(top_n=3, block_size=5)
    summary = write_topn(bundle, data, PROV, tmp_path, options, fold_in=fold_in)
    df = pq.read_table(tmp_path).to_pandas()
    rows = df[df.user_id == "u00"]
    assert set(rows["source"]) == ({"fold_in"} if fold_in else {"popular"}) and len(rows) == 3
    assert summary["users_fold_in"] == int(fold_in)
    assert not seen_pairs(data) & set(zip(rows.user_id, rows.item_id))


def test_full_scoring_and_reranking_agree_with_matrix_products(data, bundle):
    model = bundle.model
    empty = np.empty(0, np.int64)
    users = np.arange(12)
    fact = FactorizedScorer(model.user_vectors(), model.item_vectors(), torch.device("cpu"))
    want_i, want_s = fact.topn(users, 4, empty, empty)
    full_i, full_s = FullScorer(model).topn(users, 4, empty, empty)
    re_i, re_s = RerankScorer(model, fact, m=6).topn(users, 4, empty, empty)
    np.testing.assert_array_equal(full_i, want_i)
    np.testing.assert_array_equal(re_i, want_i)
    np.testing.assert_allclose(re_s, want_s, rtol=1e-5)


def test_item_filter_maps_back_to_model_item_indices():
    u = np.eye(3, dtype=np.float32)
    v = np.array([[3, 0, 0], [2, 0, 0], [1, 0, 0], [0, 5, 0]], np.float32)
    scorer = FactorizedScorer(u, v, items=np.array([1, 2, 3]))  # item 0 unavailable
    items, scores = scorer.topn(np.array([0]), 2, np.empty(0, np.int64), np.empty(0, np.int64))
    assert items.tolist() == [[1, 2]] and scores.tolist() == [[2.0, 1.0]]


def test_interactions_shape_is_respected():
    with pytest.raises(ValueError):
        Interactions(user_idx=np.array([3]), item_idx=np.array([0]), weight=np.ones(1, np.float32),
                     n_users=2, n_items=2)


def test_user_without_history_gets_content_recommendations_from_a_hybrid_model(tmp_path):
    base = make_data(n_users=6, n_items=5, per_user=2)
    bundle = fit_bundle(base)

    class Hybrid(type(bundle.model)):
        def user_vectors_from_features(self, features):
            return np.hstack([features, np.ones((len(features), 1), np.float32)])

    bundle.model.__class__ = Hybrid
    feats = np.zeros((7, 4), np.float32)
    feats[6] = [1, -1, 0.5, 0]
    inter = dataclasses.replace(base.interactions, n_users=7, user_features=feats)
    data = dataclasses.replace(base, interactions=inter, user_ids=np.append(base.user_ids, "zz-new"))
    df, summary = run(bundle, data, tmp_path, top_n=3)
    cold = df[df.user_id == "zz-new"]
    assert summary["users_content"] == 1 and set(cold["source"]) == {"content"}
    expected = np.argsort(-(bundle.model.item_vectors() @ np.r_[feats[6], 1]))[:3]
    assert cold["item_id"].tolist() == list(data.item_ids[expected])
