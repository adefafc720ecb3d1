"""The ranking metrics of :mod:`recsys.metrics`, computed with Spark DataFrames.

Same definitions, same keys (``"precision@10"``, ...), averaged over the users of ``relevant``
(a user without recommendations counts as all misses), so the published long-format top-N table
(``user_id``, ``rank``, ``item_id``) can be evaluated where it lives. ``tests/evaluate`` holds
the parity test against numpy.

Spark's own ``RankingEvaluator`` agrees on precision, recall and NDCG for users with at least
one relevant item, but its MAP@k divides by ``min(k, #relevant)`` and it averages over users
with no relevant items too, so it is not used here.
"""
from __future__ import annotations

import math

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

RANKING_METRICS = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")


def _ideal_dcg(n_rel, k: int):
    # sum_{r=1..min(k, n)} 1/log2(r+1), looked up in a literal array (k is small).
    cumulative, total = [], 0.0
    for r in range(1, k + 1):
        total += 1.0 / math.log2(r + 1)
        cumulative.append(F.lit(total))
    return F.element_at(F.array(*cumulative), F.least(n_rel, F.lit(k)).cast("int"))


def ranking_metrics_spark(
    recommendations: DataFrame,
    relevant: DataFrame,
    k: int,
    user_col: str = "user_id",
    item_col: str = "item_id",
    rank_col: str = "rank",
) -> dict[str, float]:
    """Mean precision/recall/ndcg/map/hit_rate/mrr at ``k`` over the users of ``relevant``.

    ``recommendations`` holds one row per (user, item) with a 1-based ``rank`` (best = 1);
    ``relevant`` one row per relevant (user, item), duplicates ignored.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    truth = relevant.select(user_col, item_col).dropDuplicates()
    n_rel = truth.groupBy(user_col).agg(F.count(F.lit(1)).alias("n_rel"))
    top = recommendations.where(F.col(rank_col) <= k).select(user_col, item_col, rank_col)
    hits = top.join(truth, [user_col, item_col], "inner")
    # Precision at each hit's rank: (hits ranked at or above it) / rank.
    by_rank = Window.partitionBy(user_col).orderBy(rank_col)
    hits = hits.withColumn("hits_so_far", F.row_number().over(by_rank))
    per_user_hits = hits.groupBy(user_col).agg(
        F.count(F.lit(1)).alias("n_hits"),
        F.sum(1.0 / F.log2(F.col(rank_col) + 1.0)).alias("dcg"),
        F.sum(F.col("hits_so_far") / F.col(rank_col)).alias("ap_sum"),
        F.min(rank_col).alias("first_hit"),
    )
    per_user = n_rel.join(per_user_hits, user_col, "left").na.fill(0, ["n_hits", "dcg", "ap_sum"])
    per_user = per_user.select(
        (F.col("n_hits") / F.lit(k)).alias("precision"),
        (F.col("n_hits") / F.col("n_rel")).alias("recall"),
        (F.col("dcg") / _ideal_dcg(F.col("n_rel"), k)).alias("ndcg"),
        (F.col("ap_sum") / F.col("n_rel")).alias("map"),
        (F.col("n_hits") > 0).cast("double").alias("hit_rate"),
        F.coalesce(1.0 / F.col("first_hit"), F.lit(0.0)).alias("mrr"),
    )
    row = per_user.agg(*[F.avg(m).alias(m) for m in RANKING_METRICS]).first()
    return {f"{m}@{k}": (float("nan") if row[m] is None else float(row[m])) for m in RANKING_METRICS}
