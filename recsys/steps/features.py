"""The build-features step for one ``ds``: clean interactions of the lookback window -> training set.

One atomic partition ``<warehouse>/training_set/ds=D/`` holding ``interactions/``, ``user_map/``,
``item_map/``, and (when side inputs exist) ``item_features/`` / ``user_features/``, plus a copy
of the day's ``_dq_summary.json``. Reads only partitions up to ``ds``: never ``now()``.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys import io
from recsys.config import Config
from recsys.etl import features
from recsys.etl.quality import DQ_SUMMARY_FILE
from recsys.schema import DS, INTERACTIONS, ITEMS, TRAINING_SET, USERS
from recsys.spark import get_spark

log = logging.getLogger(__name__)


class MissingInputError(FileNotFoundError):
    """No clean interactions exist in the lookback window of a ds."""


def window_partitions(warehouse: Path, ds: str, lookback_days: int) -> list[str]:
    """Complete clean-interaction partitions in (ds - lookback_days, ds], oldest first."""
    end = io.parse_ds(ds)
    start = end - dt.timedelta(days=lookback_days - 1)
    return [d for d in io.list_partitions(warehouse, INTERACTIONS)
            if start <= io.parse_ds(d) <= end]


def latest_side_partition(warehouse: Path, table: str, ds: str) -> str | None:
    """The newest cleaned side-input partition at or before ``ds`` (catalogs change slowly)."""
    older = [d for d in io.list_partitions(warehouse, table) if d <= ds]
    return older[-1] if older else None


def _read_clean(spark: SparkSession, warehouse: Path, days: list[str]) -> DataFrame:
    paths = [str(io.partition_path(warehouse, INTERACTIONS, d)) for d in days]
    base = str(io.table_path(warehouse, INTERACTIONS))
    return spark.read.option("basePath", base).parquet(*paths).withColumn(DS, F.col(DS).cast("string"))


def _side(spark: SparkSession, warehouse: Path, table: str, ds: str) -> DataFrame | None:
    part = latest_side_partition(warehouse, table, ds)
    return None if part is None else spark.read.parquet(str(io.partition_path(warehouse, table, part)))


def run_features(spark: SparkSession, cfg: Config, ds: str, warehouse: Path) -> Path:
    """Build and publish the training set of ``ds``; returns the published partition path."""
    days = window_partitions(warehouse, ds, cfg.features.lookback_days)
    if not days:
        raise MissingInputError(
            f"no clean interactions in {io.table_path(warehouse, INTERACTIONS)} for the "
            f"{cfg.features.lookback_days} days ending {ds}; run the clean step first")
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    events = features.dedupe_events(_read_clean(spark, warehouse, days))
    pairs = features.aggregate_pairs(events, cfg.features.min_weight).cache()
    items, users = _side(spark, warehouse, ITEMS, ds), _side(spark, warehouse, USERS, ds)
    # Cold start: ids that appear only in the catalog / profiles get indices too.
    user_ids = pairs.select("user_id") if users is None else pairs.select("user_id").unionByName(users.select("user_id"))
    item_ids = pairs.select("item_id") if items is None else pairs.select("item_id").unionByName(items.select("item_id"))
    user_map = features.index_map(user_ids, "user_id", "user_idx").cache()
    item_map = features.index_map(item_ids, "item_id", "item_idx").cache()

    io.clear_staging(warehouse, TRAINING_SET, ds)
    staged = io.staging_path(warehouse, TRAINING_SET, ds)
    try:
        features.training_rows(pairs, user_map, item_map).write.parquet(str(staged / "interactions"))
        user_map.coalesce(1).write.parquet(str(staged / "user_map"))
        item_map.coalesce(1).write.parquet(str(staged / "item_map"))
        if items is not None:
            features.item_features(items, item_map, cfg.features.max_categories,
                                   cfg.features.text_hash_buckets).write.parquet(str(staged / "item_features"))
        if users is not None:
            features.user_features(users, user_map, cfg.features.max_categories).write.parquet(
                str(staged / "user_features"))
        summary = io.partition_path(warehouse, INTERACTIONS, ds) / DQ_SUMMARY_FILE
        if summary.exists():
            shutil.copyfile(summary, staged / DQ_SUMMARY_FILE)
        (staged / "_lineage.json").write_text(json.dumps({"ds": ds, "interaction_partitions": days}))
    except Exception:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    finally:
        for df in (pairs, user_map, item_map):
            df.unpersist()
    final = io.partition_path(warehouse, TRAINING_SET, ds)
    io.publish_dir(staged, final)
    log.info("training set ds=%s from %d partitions -> %s", ds, len(days), final)
    return final


def features_ds(cfg: Config, ds: str, warehouse: Path | None = None, master: str | None = None) -> Path:
    """The features step as the job runs it: a Spark session from the config (or ``master``),
    then :func:`run_features` over the configured (or given) warehouse."""
    spark = get_spark("features", cfg.spark, master=master)
    return run_features(spark, cfg, ds, warehouse or cfg.paths.warehouse)
