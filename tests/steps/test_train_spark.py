"""als_spark trains in the pipeline's SparkSession. It used to build its own from its family's
`spark_master` (local[2]), so a run pointed at a cluster with `spark.master` trained ALS locally
unless a second setting named the master again."""
from __future__ import annotations

import recsys.spark
from recsys.config import load_config
from recsys.steps.train import train_families
from tests.steps.test_gate_flow import write_training_set

DS = "2026-02-01"


def test_als_spark_gets_the_pipeline_session_built_from_its_spark_settings(recsys_home, spark, monkeypatch):
    cfg = load_config(overrides={"spark.master": "local[1]", "models.als_spark.spark_master": "local[3]",
                                 "models.als_spark.factors": 4, "train.device": "cpu"})
    write_training_set(cfg.paths.warehouse, DS)
    asked = []

    def get_spark(app_name, conf, master=None):  # records who asked for which settings
        asked.append((app_name, conf.master, master))
        return spark

    monkeypatch.setattr(recsys.spark, "get_spark", get_spark)
    [result] = train_families(cfg, DS, ["als_spark"], epochs=2, progress=False)
    assert asked == [("train-als_spark", "local[1]", None)]  # the pipeline's, not its own local[3]
    assert result.version == "1"
    asked.clear()
    train_families(cfg, DS, ["ease"], progress=False)
    assert asked == []  # families that do not train in Spark start no session


def test_only_rank_0_starts_the_session(recsys_home, monkeypatch):
    """Found on the cluster: under `train.processes: 2` the second rank started an ALS application
    of its own that ran no task (it does not train als_spark, rank 0 does)."""
    from recsys import distributed

    cfg = load_config(overrides={"train.device": "cpu"})
    write_training_set(cfg.paths.warehouse, DS)
    asked = []
    monkeypatch.setattr(recsys.spark, "get_spark", lambda *a, **k: asked.append(a))
    monkeypatch.setattr(distributed, "is_main", lambda: False)
    assert train_families(cfg, DS, ["als_spark"], epochs=1, progress=False) == []
    assert asked == []
