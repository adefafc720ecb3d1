"""The Spark path gives the same top-N as the single-node path."""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
from chispa import assert_approx_df_equality

from recsys.config import ScoreConfig
from recsys.data.training_set import load_training_set, write_training_set
from recsys.interactions import Interactions
from recsys.models.bundle import ModelBundle
from recsys.score.engine import write_topn
from recsys.score.publish import read_table
from recsys.score.spark_score import score_warehouse, write_topn_spark
from recsys.score.validate import check_schema
from recsys.score.vectors import write_bundle_vectors
from tests.score.conftest import PROV, Data, fit_bundle, make_data


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

    local = spark.createDataFrame(_compared(pq.read_table(tmp_path / "local")))
    dist = spark.createDataFrame(_compared(table))
    assert local.count() == 21 * 5
    assert_approx_df_equality(local, dist, precision=1e-5, ignore_row_order=True, ignore_nullable=True)



def _compared(table):
    """The columns both engines must agree on; `because` joined to a string (order matters)."""
    df = table.to_pandas()
    df["because"] = df["because"].map(",".join)
    return df[["user_id", "rank", "item_id", "score", "source", "model_version", "generated_at",
               "because", "because_reason"]]


class _Hybrid:
    """A fitted mf_bpr's vectors plus a linear map from user features: stands in for a hybrid
    model, so that users without history get content-based lists."""

    name, factorized = "hybrid_stub", True

    def __init__(self, inner, weights: np.ndarray) -> None:
        self.inner, self.weights = inner, weights
        self.n_users, self.n_items = inner.n_users, inner.n_items

    def user_vectors(self):
        return self.inner.user_vectors()

    def item_vectors(self):
        return self.inner.item_vectors()

    def user_vectors_from_features(self, features):
        return np.asarray(features, np.float32) @ self.weights


def _day(base):
    """The scoring day: the model's users and items and, unknown to the model, a user with
    history and a new item; two users without history; a model user with none today."""
    inter = base.interactions
    keep = inter.user_idx != 0  # model user 0 has no history today
    n, m = base.interactions.n_users, base.interactions.n_items
    newbie, new_item = n, m
    u = np.r_[inter.user_idx[keep], [newbie] * 3, 1]
    i = np.r_[inter.item_idx[keep], [2, 5, new_item], new_item]
    feats = np.random.default_rng(9).standard_normal((n + 3, 3)).astype(np.float32)
    day = Interactions(user_idx=u.astype(np.int64), item_idx=i.astype(np.int64),
                       weight=np.ones(len(u), np.float32), n_users=n + 3, n_items=m + 1, user_features=feats)
    available = np.ones(m + 1, bool)
    available[[2, 7]] = False
    return Data(day, np.r_[base.user_ids, ["newbie", "fresh-b", "fresh-a"]].astype(object),
                np.r_[base.item_ids, ["i-new"]].astype(object), available)


@pytest.mark.slow  # Spark with Python workers: ~1 min alone, minutes on a busy machine
def test_warehouse_vectors_path_agrees_with_single_node(spark, tmp_path):
    """Executors read the vectors Parquet and the training set of ds; the result equals the
    single-node scorer's on the same warehouse, cold-start rows (popular and content) included."""
    base = make_data(n_users=24, n_items=15, per_user=4, seed=5)
    fitted = fit_bundle(base)
    f = fitted.model.item_vectors().shape[1]
    weights = np.random.default_rng(1).standard_normal((3, f)).astype(np.float32)
    bundle = ModelBundle(_Hybrid(fitted.model, weights), fitted.user_ids, fitted.item_ids)
    wh, ds = tmp_path / "wh", "2024-03-02"
    day = _day(base)
    write_training_set(wh, ds, day.interactions, day.user_ids, day.item_ids, day.item_available)
    vectors = write_bundle_vectors(wh, PROV.model_name, PROV.model_version, PROV.mlflow_run_id, bundle)
    options = ScoreConfig(top_n=5, block_size=7)

    write_topn(bundle, load_training_set(wh, ds), PROV, tmp_path / "local", options)
    summary = score_warehouse(spark, wh, ds, vectors, PROV, tmp_path / "spark", options,
                              content_model=bundle.model, partitions=3)
    # 23 model users; cold: "newbie" (history, no vector: folded in), user 0 (vector, no history
    # today), "fresh-a", "fresh-b" (neither): content.
    assert (summary["users"], summary["users_model"], summary["users_popular"], summary["users_content"],
            summary["users_fold_in"]) == (27, 23, 0, 3, 1)

    table = read_table(tmp_path / "spark")
    assert check_schema(table).ok, check_schema(table).message
    assert summary["rows"] == table.num_rows
    # One file per non-empty range of user ids (written by the tasks), the cold file; no leftovers.
    names = sorted(p.name for p in (tmp_path / "spark").iterdir())
    assert names[-1] == "part-cold-00000.parquet" and 1 <= len(names) - 1 <= 3
    assert all(re.fullmatch(r"part-0000[0-2]\.parquet", n) for n in names[:-1]), names
    users = table.column("user_id").to_pylist()
    model_users, cold_users = users[:23 * 5], users[23 * 5:]
    assert model_users == sorted(model_users)  # range-partitioned and sorted before scoring
    assert set(cold_users) == {"newbie", "fresh-a", "fresh-b", str(base.user_ids[0])}
    assert not {"i02", "i07"} & set(table.column("item_id").to_pylist())  # unavailable
    rows = table.to_pandas()
    newbie = rows[rows.user_id == "newbie"]
    assert set(newbie.source) == {"fold_in"} and newbie.because.map(len).gt(0).all()
    assert set(newbie.because.explode()) <= {"i02", "i05"}  # its history the model knows
    assert rows[rows.source == "model"].because.map(len).gt(0).any()

    local = spark.createDataFrame(_compared(pq.read_table(tmp_path / "local")))
    dist = spark.createDataFrame(_compared(table))
    assert local.count() == 27 * 5
    assert_approx_df_equality(local, dist, precision=1e-5, ignore_row_order=True, ignore_nullable=True)
