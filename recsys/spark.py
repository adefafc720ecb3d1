"""SparkSession construction: one function, settings from config only."""
from __future__ import annotations

import os

from pyspark.sql import SparkSession

from recsys.config import SparkConfig


def get_spark(app_name: str, conf: SparkConfig, master: str | None = None) -> SparkSession:
    """Return a SparkSession named ``<app_prefix>-<app_name>``.

    Under ``spark-submit`` the master given on the command line wins (``master`` is then None and
    ``conf.master`` is only a default); tests and `recsys` commands use ``conf.master``.
    """
    from pyspark import SparkConf, SparkContext

    builder = SparkSession.builder.appName(f"{conf.app_prefix}-{app_name}")
    # spark-submit starts the JVM before this Python driver and tells it where through
    # PYSPARK_GATEWAY_PORT: then its --master wins. Otherwise the JVM is launched here, with the
    # config's settings (driver memory and JVM options cannot change once it runs) and master.
    under_submit = "PYSPARK_GATEWAY_PORT" in os.environ
    launch = SparkConf(loadDefaults=False).setAll(list(conf.conf.items()))
    if not under_submit:
        launch.setMaster(master or conf.master)
    SparkContext._ensure_initialized(conf=launch)
    if master or not under_submit:
        builder = builder.master(master or conf.master)
    for key, value in conf.conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
