"""The nightly report's metrics (recsys.evaluate.beyond), each on a table small enough to check by
hand."""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from recsys.evaluate.beyond import (
    ReportInputs,
    catalog_coverage,
    gini,
    intra_list_diversity,
    nightly_report,
    novelty,
    overlap,
    source_share,
)

ITEMS = np.array(["a", "b", "c", "d", "e"])


def lists(rows: list[tuple[str, str, str]]) -> pa.Table:
    """(user_id, item_id, source) rows; ranks in row order per user."""
    rank: dict[str, int] = {}
    ranks = []
    for u, _, _ in rows:
        rank[u] = rank.get(u, 0) + 1
        ranks.append(rank[u])
    return pa.table({"user_id": [r[0] for r in rows], "rank": pa.array(ranks, pa.int32()),
                     "item_id": [r[1] for r in rows], "source": [r[2] for r in rows]})


TODAY = lists([("u1", "a", "model"), ("u1", "b", "model"),
               ("u2", "a", "model"), ("u2", "c", "model"),
               ("u3", "a", "popular"), ("u3", "b", "popular")])


def test_catalog_coverage_counts_distinct_recommendable_items():
    pos = np.array([0, 1, 0, 2, 0, 1])
    assert catalog_coverage(pos, np.ones(5, bool)) == (3 / 5, 3, 5)
    # "c" is unavailable: neither counted as covered nor in the catalog.
    assert catalog_coverage(pos, np.array([True, True, False, True, True])) == (2 / 4, 2, 4)


def test_gini_of_recommendation_counts():
    assert gini(np.array([2, 2, 2, 2])) == 0.0
    assert gini(np.array([0, 0, 0, 4])) == pytest.approx(3 / 4)  # one item takes all: (n-1)/n
    # counts 3, 2, 1, 0, 0 (a, b, c, d, e): sum_i (2i-n-1) x_(i) / (n sum x) over ascending x
    assert gini(np.array([3, 2, 1, 0, 0])) == pytest.approx((0 * -4 + 0 * -2 + 1 * 0 + 2 * 2 + 3 * 4) / (5 * 6))


def test_intra_list_diversity_is_mean_pairwise_cosine_distance():
    feats = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], np.float32)  # a, b, c, d (d: no features)
    users = np.array([0, 0, 1, 1, 2, 2])
    # u0: a,b orthogonal -> 1; u1: a,c at 45 degrees -> 1 - 1/sqrt(2); u2: a,d -> d left out, no pair
    pos = np.array([0, 1, 0, 2, 0, 3])
    assert intra_list_diversity(users, pos, feats) == pytest.approx((1 + 1 - 1 / math.sqrt(2)) / 2)
    # three items: a, b, c -> pairs (a,b)=1, (a,c)=(b,c)=1-1/sqrt2
    three = intra_list_diversity(np.zeros(3, np.int64), np.array([0, 1, 2]), feats)
    assert three == pytest.approx((1 + 2 * (1 - 1 / math.sqrt(2))) / 3)
    assert intra_list_diversity(np.array([0]), np.array([0]), feats) is None


def test_novelty_is_mean_self_information_of_the_rows():
    popularity = np.array([1.0, 0.5, 0.0, 0.25])  # share of users; item 2: nobody
    bits, pop = novelty(np.array([0, 1, 1, 3, -1]), popularity)  # -1: not in the catalog
    assert bits == pytest.approx((0 + 1 + 1 + 2) / 4)
    assert pop == pytest.approx((1 + 0.5 + 0.5 + 0.25) / 4)
    # an item nobody interacted with counts as the least popular one somebody did (0.25: 2 bits)
    assert novelty(np.array([2]), popularity)[0] == pytest.approx(2.0)
    assert novelty(np.array([-1]), popularity) == (None, None)


def test_source_share_is_per_user():
    assert source_share(TODAY) == {"model": pytest.approx(2 / 3), "popular": pytest.approx(1 / 3)}


def test_overlap_is_mean_jaccard_over_users_in_both_days():
    yesterday = lists([("u1", "a", "model"), ("u1", "c", "model"),   # u1: {a,b} vs {a,c} -> 1/3
                       ("u2", "a", "model"), ("u2", "c", "model"),   # u2: identical -> 1
                       ("u4", "a", "model"), ("u4", "e", "model")])  # u4: gone today, u3: new
    assert overlap(TODAY, yesterday) == (pytest.approx((1 / 3 + 1) / 2), 2)
    assert overlap(TODAY, lists([("u9", "a", "model")])) == (None, 0)


def test_nightly_report_puts_it_together():
    inputs = ReportInputs(item_ids=ITEMS, popularity=np.array([1, 2 / 3, 1 / 3, 0, 0]),
                          recommendable=np.array([True, True, True, True, False]),
                          features=np.array([[1, 0], [0, 1], [1, 1], [1, 0], [0, 1]], np.float32),
                          feature_set="genre_*")
    report = nightly_report(TODAY, inputs, previous=TODAY, previous_ds="2026-01-01")
    assert report["catalog_coverage"] == pytest.approx(3 / 4)
    assert (report["items_recommended"], report["catalog_items"]) == (3, 4)
    assert report["gini"] == pytest.approx(gini(np.array([3, 2, 1, 0])))
    # u1 a,b: 1; u2 a,c: 1 - 1/sqrt2; u3 a,b: 1
    assert report["intra_list_diversity"] == pytest.approx((2 + 1 - 1 / math.sqrt(2)) / 3)
    assert report["diversity_features"] == "genre_*"
    assert report["overlap"] == 1.0 and report["overlap_users"] == 3
    assert report["previous_ds"] == "2026-01-01"
    # rows a b | a c | a b: p = 1, 2/3 | 1, 1/3 | 1, 2/3
    assert report["novelty_bits"] == pytest.approx(np.mean(-np.log2([1, 2 / 3, 1, 1 / 3, 1, 2 / 3])))
    assert report["mean_popularity"] == pytest.approx(np.mean([1, 2 / 3, 1, 1 / 3, 1, 2 / 3]))
    no_history = nightly_report(TODAY, ReportInputs(ITEMS, np.zeros(5)))
    assert no_history["overlap"] is None and no_history["intra_list_diversity"] is None
    assert no_history["catalog_coverage"] == pytest.approx(3 / 5)
