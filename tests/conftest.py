"""Shared fixtures: one session-scoped local SparkSession; an isolated RECSYS_HOME per test."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def spark():
    from recsys.config import SparkConfig
    from recsys.spark import get_spark

    conf = SparkConfig(
        master="local[2]",
        app_prefix="recsys-test",
        conf={
            "spark.sql.shuffle.partitions": "2",
            "spark.sql.session.timeZone": "UTC",
            "spark.ui.enabled": "false",
            "spark.driver.memory": "1g",
            "spark.sql.parquet.compression.codec": "zstd",
        },
    )
    session = get_spark("tests", conf)
    yield session
    session.stop()


@pytest.fixture()
def recsys_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "var"
    monkeypatch.setenv("RECSYS_HOME", str(home))
    return home


@pytest.fixture()
def config(recsys_home):
    from recsys.config import load_config

    return load_config(env="local")
