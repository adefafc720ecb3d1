"""The pipeline with score.engine=spark: the train step writes the registered version's vectors to
the warehouse, the score step scores from them and stages the same rows as the local engine; a
version without vectors (trained before) gets them written once by the score step."""
from __future__ import annotations

import logging
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from chispa import assert_approx_df_equality

from recsys import tracking
from recsys.config import load_config
from recsys.data.training_set import write_training_set
from recsys.interactions import Interactions
from recsys.score.publish import read_table
from recsys.score.vectors import read_info, vectors_path

D1, D2 = "2026-02-01", "2026-02-02"
SMALL = {"score.model": "mf_bpr", "models.mf_bpr.factors": 8, "models.mf_bpr.batch_size": 256, "score.top_n": 5}


def _write_days(warehouse):
    """D1: 40 users x 12 items; D2: the same plus a new user with history and one without."""
    rng = np.random.default_rng(0)
    u = np.repeat(np.arange(40), 5)
    i = np.concatenate([rng.choice(12, 5, replace=False) for _ in range(40)])
    users = np.array([f"user{k:03d}" for k in range(40)], object)
    items = np.array([f"item{k:02d}" for k in range(12)], object)
    write_training_set(warehouse, D1, Interactions(u, i, np.ones(len(u), np.float32), 40, 12), users, items)
    u2, i2 = np.r_[u, [40, 40]], np.r_[i, [0, 1]]
    write_training_set(warehouse, D2, Interactions(u2, i2, np.ones(len(u2), np.float32), 42, 12),
                       np.r_[users, ["user900", "user901"]].astype(object), items)


def _staged(cfg):
    from recsys.steps.score import score_ds

    return read_table(score_ds(cfg, D2)).to_pandas()


@pytest.mark.slow  # training, MLflow and three scoring runs, two with Spark: minutes
def test_train_writes_vectors_and_spark_score_matches_local(spark, config, caplog):
    from recsys.steps.train import train_families

    wh = config.paths.warehouse
    _write_days(wh)
    cfg = load_config(overrides={**SMALL, "score.engine": "spark"})
    (result,) = train_families(cfg, D1, ["mf_bpr"], epochs=2, progress=False)
    path = vectors_path(wh, result.name, result.version)
    info = read_info(path)
    assert (info["run_id"], info["source"], info["users"], info["items"]) == (result.run_id, "train", 40, 12)
    loaded = tracking.load_version(cfg, "mf_bpr", result.version)
    np.testing.assert_array_equal(np.stack(pq.read_table(path / "users")["vector"].to_pylist()),
                                  loaded.model.user_vectors())
    tracking.setup(cfg)
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(result.name, tracking.CHAMPION, result.version)

    dist = _staged(cfg)
    local = _staged(load_config(overrides={**SMALL, "score.engine": "local"}))
    # user900 (new, with history) is folded in; user901 (no history) gets the popular list.
    assert len(local) == 42 * 5 and set(dist.source) == {"model", "fold_in", "popular"}
    cols = ["user_id", "rank", "item_id", "score", "source", "model_version"]  # generated_at: now()
    assert_approx_df_equality(spark.createDataFrame(local[cols]), spark.createDataFrame(dist[cols]),
                              precision=1e-5, ignore_row_order=True, ignore_nullable=True)

    # A version trained before the train step wrote vectors: the score step writes them once.
    shutil.rmtree(path)
    with caplog.at_level(logging.WARNING, logger="recsys.score.vectors"):
        again = _staged(cfg)
    assert "writing them once from the loaded model" in caplog.text
    assert read_info(path)["source"] == "migration"
    assert_approx_df_equality(spark.createDataFrame(again[cols]), spark.createDataFrame(dist[cols]),
                              precision=0, ignore_row_order=True, ignore_nullable=True)
