"""Spark MLlib ALS (implicit preferences) as the distributed reference model.

Training runs in Spark; the fitted factors are collected into numpy so that the model scores and
saves like every other family. The SparkSession comes from ``FitOptions.spark`` or, when absent,
is built with :func:`recsys.spark.get_spark` from ``spark_master`` (pyspark is imported lazily:
nothing else in the models package needs it). The train step passes the pipeline's session
(``spark:`` of the configuration), so on a cluster ALS runs there like every other Spark step.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from recsys.interactions import Interactions
from recsys.models.base import FitOptions, Recommender


def _spark(options: FitOptions, master: str):
    if options.spark is not None:
        return options.spark
    try:
        from recsys.config import SparkConfig
        from recsys.spark import get_spark
    except ImportError as exc:  # pragma: no cover - pyspark is a pinned dependency
        raise ImportError("als_spark needs pyspark: pip install pyspark") from exc
    return get_spark("als", SparkConfig(master=master, conf={"spark.ui.enabled": "false",
                                                         "spark.ui.showConsoleProgress": "false"}))


def _factors(df, n: int, k: int) -> np.ndarray:
    pdf = df.toPandas()
    out = np.zeros((n, k), np.float32)  # rows Spark never saw stay zero (score 0)
    if len(pdf):
        out[pdf["id"].to_numpy()] = np.stack(pdf["features"].to_numpy()).astype(np.float32)
    return out


class ALSSpark(Recommender):
    name = "als_spark"
    factorized = True
    needs_spark = True  # the train step passes FitOptions.spark

    def fit(self, train: Interactions, options: FitOptions) -> "ALSSpark":
        from pyspark.ml.recommendation import ALS

        self._remember(train)
        cfg = self.config
        spark = _spark(options, cfg.spark_master)
        values = train.weight if cfg.implicit or train.rating is None else train.rating
        frame = pd.DataFrame({"user": train.user_idx.astype(np.int32),
                              "item": train.item_idx.astype(np.int32),
                              "rating": values.astype(np.float32)})
        als = ALS(rank=cfg.factors, maxIter=options.epochs or cfg.max_iter, regParam=cfg.reg,
                  alpha=cfg.alpha, implicitPrefs=cfg.implicit, seed=options.seed,
                  numUserBlocks=cfg.blocks, numItemBlocks=cfg.blocks,
                  userCol="user", itemCol="item", ratingCol="rating")
        fitted = als.fit(spark.createDataFrame(frame))
        self.users = _factors(fitted.userFactors, train.n_users, cfg.factors)
        self.items = _factors(fitted.itemFactors, train.n_items, cfg.factors)
        return self

    def user_vectors(self) -> np.ndarray:
        self._check_fitted()
        return self.users

    def item_vectors(self) -> np.ndarray:
        self._check_fitted()
        return self.items

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return np.einsum("nf,nf->n", self.users[user_idx], self.items[item_idx]).astype(np.float32)

    def state(self) -> dict[str, Any]:
        return {"users": self.users, "items": self.items}

    def load_state(self, state: dict[str, Any]) -> None:
        self.users, self.items = state["users"], state["items"]
