"""Issue 11: with ``score.engine: spark`` nothing per user passes through the driver.

The score step used to load the version's whole bundle on the driver (every user's vector, via
``tracking.load_version``) even when the train step had written the vectors to the warehouse for
the executors. These tests spy on the driver: the bundle must not be loaded, and no collection
brought back to it may hold a row per user.
"""
from __future__ import annotations

import numpy as np
import pytest

from recsys import tracking
from recsys.config import load_config
from recsys.data.training_set import write_training_set
from recsys.interactions import Interactions
from recsys.score.publish import read_table

DS = "2026-03-01"
N_USERS, N_ITEMS = 400, 15
TOP_N = 5


class _Collected:
    """Rows each DataFrame collection (collect / toArrow / toPandas) brought to the driver."""

    def __init__(self, monkeypatch, cls: type) -> None:
        self.sizes: list[int] = []
        for name, size in (("collect", len), ("toArrow", lambda t: t.num_rows), ("toPandas", len)):
            original = getattr(cls, name)

            def spy(df, *a, _original=original, _size=size, **kw):
                out = _original(df, *a, **kw)
                self.sizes.append(_size(out))
                return out

            monkeypatch.setattr(cls, name, spy)


def _day(warehouse) -> None:
    """N_USERS users with history (and two without: one new in the id map only) x N_ITEMS."""
    rng = np.random.default_rng(3)
    u = np.repeat(np.arange(N_USERS), 4)
    i = np.concatenate([rng.choice(N_ITEMS, 4, replace=False) for _ in range(N_USERS)])
    users = np.array([f"user{k:04d}" for k in range(N_USERS + 1)], object)
    items = np.array([f"item{k:02d}" for k in range(N_ITEMS)], object)
    write_training_set(warehouse, DS, Interactions(u, i, np.ones(len(u), np.float32), N_USERS + 1, N_ITEMS),
                       users, items)


@pytest.fixture()
def champion(config):
    """An mf_bpr version trained (1 epoch) with score.engine=spark, so its vectors are written,
    and made champion."""
    from mlflow import MlflowClient

    from recsys.steps.train import train_families

    _day(config.paths.warehouse)
    cfg = load_config(overrides={"models.mf_bpr.factors": 4, "score.top_n": TOP_N, "score.engine": "spark",
                                 "score.model": "mf_bpr"})
    (result,) = train_families(cfg, DS, ["mf_bpr"], epochs=1, progress=False)
    tracking.setup(cfg)
    MlflowClient().set_registered_model_alias(result.name, tracking.CHAMPION, result.version)
    return cfg


@pytest.mark.slow  # a training run, MLflow and a Spark scoring: about a minute here
def test_spark_score_step_never_loads_the_bundle_nor_collects_users(spark, champion, monkeypatch):
    import recsys.steps.score as step

    def refuse(*args, **kwargs):
        raise AssertionError("the score step loaded the model bundle (every user's vector) on the driver")

    monkeypatch.setattr(step, "load_version", refuse)
    # The session's concrete class (pyspark.sql.classic's), whose methods the engine calls.
    collected = _Collected(monkeypatch, type(spark.range(0)))
    table = read_table(step.score_ds(champion, DS)).to_pandas()

    # Every user scored: the 400 with history by the executors, the one without (popular) here.
    assert table.user_id.nunique() == N_USERS + 1 and len(table) == (N_USERS + 1) * TOP_N
    assert set(table.source) == {"model", "popular"}
    # What came back to the driver: one row per scoring task, the cold user, per-item counts.
    assert collected.sizes, "the spy saw no collection: it does not watch the engine's calls"
    assert max(collected.sizes) < N_USERS // 4, collected.sizes
