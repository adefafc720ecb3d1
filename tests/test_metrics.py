"""Every metric against values computed by hand on tiny literal examples."""
import math

import numpy as np
import pytest
import scipy.sparse as sp

from recsys import metrics as M

LOG3 = 1 / math.log2(3)  # discount at rank 2


def _relevant(rows: list[list[int]], n_items: int = 10) -> sp.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(rows), n_items))


# Row 0: a hit at rank 2 of 2 relevant. Row 1: hits at ranks 1-3 of 4 relevant.
# Row 2: no relevant items (not evaluated). Row 3: no hit.
RECOMMENDED = np.array([[5, 2, 7], [1, 3, 4], [0, -1, -1], [0, 1, 2]])
RELEVANT = _relevant([[2, 9], [1, 3, 4, 8], [], [6]])


def test_ranking_metrics_match_hand_computed_values():
    got = M.ranking_metrics(RECOMMENDED, RELEVANT, k=3)
    ndcg0 = LOG3 / (1 + LOG3)  # one hit at rank 2; ideal has min(3, 2) = 2 hits
    assert got["precision@3"] == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert got["recall@3"] == pytest.approx((1 / 2 + 3 / 4 + 0) / 3)
    assert got["ndcg@3"] == pytest.approx((ndcg0 + 1.0 + 0) / 3)
    assert got["map@3"] == pytest.approx(((1 / 2) / 2 + 3 / 4 + 0) / 3)
    assert got["hit_rate@3"] == pytest.approx(2 / 3)
    assert got["mrr@3"] == pytest.approx((1 / 2 + 1 + 0) / 3)


def test_single_metric_functions_agree_with_the_bundle():
    bundle = M.ranking_metrics(RECOMMENDED, RELEVANT, k=2)
    for fn, key in [(M.precision_at_k, "precision"), (M.recall_at_k, "recall"),
                    (M.ndcg_at_k, "ndcg"), (M.map_at_k, "map"),
                    (M.hit_rate_at_k, "hit_rate"), (M.mrr_at_k, "mrr")]:
        assert fn(RECOMMENDED, RELEVANT, 2) == pytest.approx(bundle[f"{key}@2"])


def test_map_is_sum_of_precision_at_hit_ranks_over_number_relevant():
    # Hits at ranks 1 and 3 of 2 relevant items: (1/1 + 2/3) / 2; a 3rd relevant item halves less.
    assert M.map_at_k(np.array([[1, 0, 2]]), _relevant([[1, 2]]), 3) == pytest.approx(5 / 6)
    assert M.map_at_k(np.array([[1, 0, 2]]), _relevant([[1, 2, 9]]), 3) == pytest.approx(5 / 9)


def test_ndcg_ideal_is_capped_at_k():
    # 5 relevant, all of the top 2 hit: ideal DCG over min(2, 5) = 2 ranks, so NDCG is 1.
    assert M.ndcg_at_k(np.array([[1, 2]]), _relevant([[1, 2, 3, 4, 5]]), 2) == pytest.approx(1.0)


def test_only_the_first_k_columns_count():
    rec = np.array([[0, 1, 2]])  # the hit at rank 3 is outside k=2
    assert M.precision_at_k(rec, _relevant([[2]]), 2) == 0.0
    assert M.precision_at_k(rec, _relevant([[2]]), 3) == pytest.approx(1 / 3)


def test_padding_never_hits_even_the_last_item():
    rel = _relevant([[9]], n_items=10)
    assert M.hit_rate_at_k(np.array([[-1, -1]]), rel, 2) == 0.0


def test_duplicate_relevant_entries_count_once():
    rel = sp.coo_matrix((np.ones(2), ([0, 0], [3, 3])), shape=(1, 5))
    assert M.recall_at_k(np.array([[3, 1]]), rel.tocsr(), 2) == pytest.approx(1.0)
    assert M.map_at_k(np.array([[3, 1]]), rel.tocsr(), 2) == pytest.approx(1.0)


def test_the_relevant_matrix_is_not_modified():
    rel = sp.csr_matrix((np.ones(3), [3, 3, 1], [0, 3]), shape=(1, 5))  # duplicates, unsorted
    M.ranking_metrics(np.array([[3, 1]]), rel, 2)
    assert rel.indices.tolist() == [3, 3, 1]


def test_shape_errors_are_explicit():
    with pytest.raises(ValueError, match=">= 3"):
        M.precision_at_k(np.array([[1, 2]]), _relevant([[1]]), 3)
    with pytest.raises(ValueError, match="rows"):
        M.precision_at_k(np.array([[1], [2]]), _relevant([[1]]), 1)


def test_no_evaluable_user_gives_nan():
    assert math.isnan(M.precision_at_k(np.array([[1]]), _relevant([[]]), 1))


def test_catalog_coverage():
    assert M.catalog_coverage(np.array([[0, 1], [1, 2], [-1, -1]]), 5, 2) == pytest.approx(3 / 5)


def test_popularity_bias_and_novelty():
    # 4 users: item 0 seen by all, item 1 by two, item 2 by one, item 3 by none.
    train = _relevant([[0, 1], [0, 1], [0, 2], [0]], n_items=4)
    pop = M.item_popularity(train)
    np.testing.assert_allclose(pop, [1.0, 0.5, 0.25, 0.0])
    rec = np.array([[0, 1], [1, 2]])
    assert M.average_popularity(rec, pop, 2) == pytest.approx((1 + 0.5 + 0.5 + 0.25) / 4)
    assert M.novelty(rec, pop, 2) == pytest.approx((0 + 1 + 1 + 2) / 4)
    # An item nobody saw is floored at the rarest observed popularity (finite, = 2 bits).
    assert M.novelty(np.array([[3]]), pop, 1) == pytest.approx(2.0)


def test_rmse_and_mae():
    assert M.rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    assert M.mae([1, 2, 3], [2, 2, 5]) == pytest.approx(1.0)
