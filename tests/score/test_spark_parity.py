"""The Spark path gives the same top-N as the single-node path."""
from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow.parquet as pq
import pytest
from chispa import assert_approx_df_equality

from recsys.config import ScoreConfig
from recsys.score.engine import write_topn
from recsys.score.publish import read_table
from recsys.score.spark_score import write_topn_spark
from recsys.score.validate import check_schema
from tests.score.conftest import PROV, fit_bundle, make_data


@pytest.mark.slow  # starts Spark tasks with Python workers: ~30 s alone, minutes on a busy machine
def test_spark_and_single_node_agree(spark, tmp_path):
    base = make_data(n_users=20, n_items=15, per_user=4, seed=3)
    bundle = fit_bundle(base)
    # One user without history (cold start) and two unavailable items exercise every filter.
    inter = dataclasses.replace(base.interactions, n_users=21)
    available = np.ones(15, bool)
    available[[2, 7]] = False
    data = dataclasses.replace(base, interactions=inter, item_available=available,
                               user_ids=np.append(base.user_ids, "new-user"))
    options = ScoreConfig(top_n=5, block_size=7)
    write_topn(bundle, data, PROV, tmp_path / "local", options)
    summary = write_topn_spark(spark, bundle, data, PROV, tmp_path / "spark", options)
    assert (summary["users_model"], summary["users_popular"]) == (20, 1)

    table = read_table(tmp_path / "spark")
    assert check_schema(table).ok, check_schema(table).message
    users = table.column("user_id").to_pylist()
    assert users[:-5] == sorted(users[:-5]) and set(users[-5:]) == {"new-user"}  # model, then cold

    cols = ["user_id", "rank", "item_id", "score", "source", "model_version", "generated_at"]
    local = spark.createDataFrame(pq.read_table(tmp_path / "local").to_pandas()[cols])
    dist = spark.createDataFrame(table.to_pandas()[cols])
    assert local.count() == 21 * 5
    assert_approx_df_equality(local, dist, precision=1e-5, ignore_row_order=True, ignore_nullable=True)

