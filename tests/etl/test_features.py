"""Training-set transforms on literal rows, and the build-features step with the pyarrow loader."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from chispa import assert_df_equality

from recsys import io
from recsys.data.training_set import TrainingSetNotFound, load_training_set
from recsys.etl import features
from recsys.schema import CLEAN_INTERACTIONS
from recsys.steps.features import MissingInputError, run_features

T0 = dt.datetime(2024, 1, 10, 8)
H = dt.timedelta(hours=1)


def _clean(spark, rows):
    return spark.createDataFrame(rows, CLEAN_INTERACTIONS)


def test_aggregate_pairs_sums_weights_keeps_latest_rating_and_ts(spark):
    events = _clean(spark, [
        ("a", "u1", "i1", "view", None, 1.0, T0),
        ("b", "u1", "i1", "rating", 2.0, 2.0, T0 + H),
        ("c", "u1", "i1", "rating", 4.0, 4.0, T0 + 2 * H),
        ("d", "u1", "i1", "view", None, 1.0, T0 + 3 * H),
        ("e", "u2", "i1", "click", None, 2.0, T0),
    ])
    out = features.aggregate_pairs(events)
    expected = spark.createDataFrame(
        [("u1", "i1", 8.0, 4.0, T0 + 3 * H), ("u2", "i1", 2.0, None, T0)],
        "user_id string, item_id string, weight double, rating double, ts timestamp")
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)
    assert features.aggregate_pairs(events, min_weight=3.0).count() == 1


def test_index_map_is_dense_and_sorted(spark):
    ids = spark.createDataFrame([("b",), ("a",), ("c",), ("a",), (None,)], "user_id string")
    out = features.index_map(ids, "user_id", "user_idx")
    expected = spark.createDataFrame([(0, "a"), (1, "b"), (2, "c")], "user_idx int, user_id string")
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_dedupe_events_keeps_earliest_copy_across_days(spark):
    df = _clean(spark, [("a", "u1", "i1", "view", None, 1.0, T0 + H),
                        ("a", "u1", "i1", "view", None, 1.0, T0)]).selectExpr("*", "'d' as ds")
    assert [r["ts"] for r in features.dedupe_events(df).collect()] == [T0]


def _write_clean(spark, wh, ds, rows):
    _clean(spark, rows).write.parquet(str(io.partition_path(wh, "interactions", ds)))
    (io.partition_path(wh, "interactions", ds) / io.SUCCESS).touch()


def test_run_features_and_load(spark, config, tmp_path):
    wh = tmp_path / "wh"
    _write_clean(spark, wh, "2024-01-09", [("a", "u2", "i1", "rating", 3.0, 3.0, T0 - 24 * H)])
    _write_clean(spark, wh, "2024-01-10", [("b", "u1", "i2", "view", None, 1.0, T0),
                                           ("c", "u1", "i2", "click", None, 2.0, T0 + H)])
    _write_clean(spark, wh, "2024-01-11", [("z", "u9", "i9", "view", None, 1.0, T0 + 24 * H)])
    spark.createDataFrame([("i3", "New", ["drama"], [], 2020.0, None, False, None),
                           ("i1", "Old", ["drama", "war"], ["x"], 1990.0, 5.0, True, None)],
                          "item_id string, title string, genres array<string>, tags array<string>, "
                          "year double, price double, available boolean, description string"
                          ).write.parquet(str(io.partition_path(wh, "items", "2024-01-10")))
    (io.partition_path(wh, "items", "2024-01-10") / io.SUCCESS).touch()
    run_features(spark, config, "2024-01-10", wh)  # 2024-01-11 is in the future: never read
    ts = load_training_set(wh, "2024-01-10")
    assert list(ts.user_ids) == ["u1", "u2"]
    assert list(ts.item_ids) == ["i1", "i2", "i3"]  # i3: catalog only (cold start)
    i = ts.interactions
    got = sorted(zip(ts.user_ids[i.user_idx], ts.item_ids[i.item_idx], i.weight.tolist(),
                     np.nan_to_num(i.rating, nan=-1).tolist(), i.ts.tolist()))
    assert got == [("u1", "i2", 3.0, -1.0, int((T0 + H).replace(tzinfo=dt.timezone.utc).timestamp())),
                   ("u2", "i1", 3.0, 3.0, int((T0 - 24 * H).replace(tzinfo=dt.timezone.utc).timestamp()))]
    assert ts.item_available.tolist() == [True, True, False]  # i2 is not in the catalog
    assert i.item_features.shape[0] == 3 and i.item_features.dtype == np.float32
    assert i.user_features is None
    assert ts.dq_summary is None


def test_missing_inputs_and_outputs_are_clear_errors(spark, config, tmp_path):
    with pytest.raises(MissingInputError, match="run the clean step first"):
        run_features(spark, config, "2024-01-10", tmp_path)
    with pytest.raises(TrainingSetNotFound, match="does not exist"):
        load_training_set(tmp_path, "2024-01-10")
