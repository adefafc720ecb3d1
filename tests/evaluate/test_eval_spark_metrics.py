"""Spark ranking metrics: hand-computed values and parity with the numpy implementation."""
import numpy as np
import pytest
import scipy.sparse as sp

from recsys import metrics as M
from recsys.evaluate.spark_metrics import ranking_metrics_spark


def _recs_df(spark, recommended: np.ndarray):
    rows = [(int(u), int(item), r + 1) for u, row in enumerate(recommended)
            for r, item in enumerate(row) if item >= 0]
    return spark.createDataFrame(rows, "user_id int, item_id int, rank int")


def _truth_df(spark, relevant: sp.csr_matrix):
    coo = relevant.tocoo()
    rows = [(int(u), int(i)) for u, i in zip(coo.row, coo.col)]
    return spark.createDataFrame(rows, "user_id int, item_id int")


def test_spark_metrics_hand_computed(spark):
    # User 1: hit at rank 2 of 2 relevant; user 2: hits at ranks 1 and 3 of 2 relevant.
    recs = spark.createDataFrame(
        [(1, 10, 1), (1, 11, 2), (1, 12, 3), (2, 20, 1), (2, 21, 2), (2, 22, 3)],
        "user_id int, item_id int, rank int")
    truth = spark.createDataFrame([(1, 11), (1, 99), (2, 20), (2, 22)], "user_id int, item_id int")
    got = ranking_metrics_spark(recs, truth, k=3)
    d2 = 1 / np.log2(3)
    assert got["precision@3"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert got["recall@3"] == pytest.approx((1 / 2 + 1) / 2)
    assert got["ndcg@3"] == pytest.approx((d2 / (1 + d2) + (1 + 0.5) / (1 + d2)) / 2)
    assert got["map@3"] == pytest.approx(((1 / 2) / 2 + (1 + 2 / 3) / 2) / 2)
    assert got["hit_rate@3"] == pytest.approx(1.0)
    assert got["mrr@3"] == pytest.approx((1 / 2 + 1) / 2)


def test_spark_matches_numpy_on_random_data(spark):
    rng = np.random.default_rng(7)
    n_users, n_items, k = 40, 30, 5
    recommended = np.stack([rng.permutation(n_items)[:8] for _ in range(n_users)])
    recommended[3] = -1  # a test user with no recommendations counts as all misses
    relevant = sp.random(n_users, n_items, density=0.15, format="csr", random_state=3)
    relevant.data[:] = 1
    expected = M.ranking_metrics(recommended, relevant, k)
    got = ranking_metrics_spark(_recs_df(spark, recommended), _truth_df(spark, relevant), k)
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], rel=1e-9), key


def test_spark_ranking_evaluator_agrees_on_precision_recall_ndcg(spark):
    from pyspark.ml.evaluation import RankingEvaluator

    rng = np.random.default_rng(11)
    n_users, n_items, k = 20, 25, 5
    recommended = np.stack([rng.permutation(n_items)[:k] for _ in range(n_users)])
    truth = [rng.choice(n_items, size=rng.integers(1, 6), replace=False) for _ in range(n_users)]
    relevant = sp.csr_matrix((np.ones(sum(map(len, truth))),
                              (np.repeat(np.arange(n_users), [len(t) for t in truth]),
                               np.concatenate(truth))), shape=(n_users, n_items))
    ours = M.ranking_metrics(recommended, relevant, k)
    df = spark.createDataFrame(
        [([float(x) for x in rec], [float(x) for x in t]) for rec, t in zip(recommended, truth)],
        "prediction array<double>, label array<double>")
    for spark_name, key in [("precisionAtK", "precision"), ("recallAtK", "recall"),
                            ("ndcgAtK", "ndcg")]:
        value = RankingEvaluator(metricName=spark_name, k=k).evaluate(df)
        assert value == pytest.approx(ours[f"{key}@{k}"], rel=1e-9), spark_name
