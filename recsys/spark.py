"""SparkSession construction: one function, settings from config only."""
from __future__ import annotations

from pyspark.sql import SparkSession

from recsys.config import SparkConfig


def get_spark(app_name: str, conf: SparkConfig, master: str | None = None) -> SparkSession:
    """Return a SparkSession named ``<app_prefix>-<app_name>``.

    Under ``spark-submit`` the master given on the command line wins (``master`` is then None and
    ``conf.master`` is only a default); tests and `recsys` commands use ``conf.master``.
    """
    from pyspark import SparkConf, SparkContext

    builder = SparkSession.builder.appName(f"{conf.app_prefix}-{app_name}")
    # Start (or, under spark-submit, join) the JVM first, so that a --master given to spark-submit
    # shows in SparkConf and is not overridden by the config's default.
    SparkContext._ensure_initialized()
    if master or not SparkConf().contains("spark.master"):
        builder = builder.master(master or conf.master)
    for key, value in conf.conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
