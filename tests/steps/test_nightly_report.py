"""The publish step's nightly report: computed from the staged table and the day's training set
(item features included), written into the manifest and logged to one MLflow run per day with
a PNG plot over the published days; a rerun of a day logs to the same run."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient

from recsys.config import load_config
from recsys.data.training_set import training_set_path, write_training_set
from recsys.interactions import Interactions
from recsys.steps.publish import publish_ds
from recsys.tracking import REPORT_KIND, REPORT_PLOT, setup
from tests.score.test_report_publish import DAY1, NEAR
from tests.test_publish import stage, table

D1, D2 = "2024-03-02", "2024-03-03"
USERS = np.array(["u1", "u2", "u3"])
ITEMS = np.array([f"i{k}" for k in range(10)])


def write_day(warehouse, ds):
    """u1 saw i1, i2; u2 saw i2; u3 saw i9. Items i0..i4 are genre a, i5..i9 genre b, i3 both."""
    u, i = np.array([0, 0, 1, 2]), np.array([1, 2, 2, 9])
    inter = Interactions(user_idx=u, item_idx=i, weight=np.ones(4, np.float32), n_users=3, n_items=10)
    write_training_set(warehouse, ds, inter, USERS, ITEMS)
    folder = training_set_path(warehouse, ds) / "item_features"
    folder.mkdir()
    genre_a = (np.arange(10) < 5).astype(np.float32)
    genre_b = 1 - genre_a
    genre_b[3] = 1
    pq.write_table(pa.table({"item_idx": pa.array(np.arange(10), pa.int32()), "available": [True] * 10,
                             "genre_a": genre_a, "genre_b": genre_b,
                             "year": np.linspace(-1, 1, 10).astype(np.float32)}), folder / "part-0.parquet")


def publish_two_days(log_report: bool):
    cfg = load_config(overrides={"score.top_n": 2, "publish.report_bounds.max_coverage_change": 0.5})
    wh = cfg.paths.warehouse
    for ds in (D1, D2):
        write_day(wh, ds)
    stage(wh, D1, table(DAY1))
    m1 = publish_ds(cfg, D1, log_report=log_report)
    stage(wh, D2, table(NEAR))
    return cfg, m1, publish_ds(cfg, D2, log_report=log_report)


def test_report_uses_the_training_sets_genres_and_popularity(config):
    _, _, m2 = publish_two_days(log_report=False)
    r = m2["report"]
    assert r["catalog_coverage"] == 0.4 and r["previous_ds"] == D1
    # By genre (year ignored): u1 {i3: a+b, i4: a} -> 1 - 1/sqrt2; u2 {i1: a, i0: a} -> 0;
    # u3 {i1: a, i3: a+b} -> 1 - 1/sqrt2.
    assert r["diversity_features"] == "genre_*"
    assert r["intra_list_diversity"] == pytest.approx(2 * (1 - 1 / np.sqrt(2)) / 3)
    # p(i): share of the 3 users, rows i3 i4 | i1 i0 | i1 i3 -> 0 0 | 1/3 0 | 1/3 0; for the
    # novelty, items nobody interacted with count as the least popular seen one (1/3)
    p = np.array([0, 0, 1, 0, 1, 0]) / 3
    assert r["novelty_bits"] == pytest.approx(-np.log2(1 / 3))
    assert r["mean_popularity"] == pytest.approx(p.mean())


@pytest.mark.slow  # an MLflow SQLite store: ~20 s
def test_publish_logs_the_report_to_mlflow_and_the_manifest(config):
    cfg, m1, m2 = publish_two_days(log_report=True)
    wh = cfg.paths.warehouse
    r = m2["report"]
    setup(cfg)
    client = MlflowClient()
    exp = client.get_experiment_by_name(cfg.mlflow.experiment)
    runs = client.search_runs([exp.experiment_id], f"tags.kind = '{REPORT_KIND}'")
    by_ds = {run.data.tags["ds"]: run for run in runs}
    assert set(by_ds) == {D1, D2}
    run2 = by_ds[D2]
    assert run2.data.metrics["catalog_coverage"] == 0.4
    assert run2.data.metrics["source_share.popular"] == 1 / 3
    assert run2.data.tags["model_version"] == m1["model_version"]
    names = {a.path for a in client.list_artifacts(run2.info.run_id)}
    assert {REPORT_PLOT, "nightly_report.json"} <= names
    png = client.download_artifacts(run2.info.run_id, REPORT_PLOT)
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    logged = json.loads(open(client.download_artifacts(run2.info.run_id, "nightly_report.json")).read())
    assert logged == r

    # A rerun of the day logs to the same run.
    stage(wh, D2, table(NEAR))
    publish_ds(cfg, D2)
    assert len(client.search_runs([exp.experiment_id], f"tags.kind = '{REPORT_KIND}'")) == 2
