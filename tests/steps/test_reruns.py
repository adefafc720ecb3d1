"""Reruns and backfills reproduce the day, against a real MLflow registry (SQLite under a temp
RECSYS_HOME) and tiny models trained for real:

* a rerun of a published day scores with the version that served it, not today's champion;
* a backfill of a day never published, older than the champion's training data, scores with the
  newest promoted version trained on data up to that day (and never with a model trained on the
  day's future unless told to), and its own publish never deletes it;
* a model trained on older data never takes the champion alias from one trained on newer data,
  unless forced.
"""
from __future__ import annotations

import logging

import pandas as pd
import pytest
from mlflow import MlflowClient

from recsys import io, tracking
from recsys.config import load_config
from recsys.schema import RECOMMENDATIONS
from recsys.score.publish import read_table
from recsys.score.staging import pending_path
from recsys.steps.evaluate import evaluate_families
from recsys.steps.publish import publish_ds
from recsys.steps.score import score_ds
from recsys.steps.train import train_families
from tests.steps.test_gate_flow import write_training_set

pytestmark = pytest.mark.slow

D0, D1, D2, D3 = "2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"
# Tiny and fast; tolerance 1.0 makes every challenger pass on ndcg@10 (in [0, 1]), so only the
# rules under test can keep it from being promoted.
OVERRIDES = {"score.model": "mf_bpr", "models.mf_bpr.factors": 8, "models.mf_bpr.batch_size": 256, "models.mf_bpr.lr": 0.05,
             "score.top_n": 5, "evaluate.tolerance": 1.0}
JOB_SETS = [x for k, v in OVERRIDES.items() for x in ("--set", f"{k}={v}")]


@pytest.fixture()
def cfg(config):
    cfg = load_config(overrides=OVERRIDES)
    for seed, ds in enumerate((D0, D1, D2, D3)):
        write_training_set(cfg.paths.warehouse, ds, seed=seed)
    return cfg


def _train_and_gate(cfg, ds, **kwargs):
    (result,) = train_families(cfg, ds, ["mf_bpr"], epochs=2, progress=False)
    return result, evaluate_families(cfg, ds, ["mf_bpr"], **kwargs)["mf_bpr"]


def _live(cfg, ds) -> pd.DataFrame:
    return pd.read_parquet(io.partition_path(cfg.paths.warehouse, RECOMMENDATIONS, ds)) \
        .drop(columns="generated_at")


def _staged_version(cfg, ds) -> set[str]:
    return set(read_table(pending_path(cfg.paths.warehouse, ds)).column("model_version").to_pylist())


def test_rerun_of_past_day_scores_with_the_version_that_served_it(cfg, caplog):
    v1, gate1 = _train_and_gate(cfg, D1)
    assert gate1.promote
    score_ds(cfg, D1)
    assert publish_ds(cfg, D1)["model_version"] == v1.version
    original = _live(cfg, D1)
    v2, gate2 = _train_and_gate(cfg, D2)  # the next day's model becomes champion
    assert gate2.promote and tracking.champion_version(cfg, "mf_bpr") == v2.version

    caplog.set_level(logging.INFO, logger="recsys.steps.score")
    score_ds(cfg, D1)  # the rerun of the past day
    manifest = publish_ds(cfg, D1)
    assert (manifest["model_version"], manifest["mlflow_run_id"]) == (v1.version, v1.run_id)
    assert manifest["scoring"]["models"]["model"]["rule"] == "served"
    assert f"rerun of ds={D1}: v{v1.version}" in caplog.text
    pd.testing.assert_frame_equal(_live(cfg, D1), original)  # the same pairs, ranks and scores

    # Told to, it rescores with today's champion.
    score_ds(cfg, D1, rescore_with_champion=True)
    assert _staged_version(cfg, D1) == {v2.version}


def test_backfill_of_unpublished_day_scores_with_newest_version_trained_up_to_it(cfg, caplog):
    v1, _ = _train_and_gate(cfg, D1)
    score_ds(cfg, D1)
    publish_ds(cfg, D1)
    v3, gate3 = _train_and_gate(cfg, D3)
    assert gate3.promote
    score_ds(cfg, D3)
    publish_ds(cfg, D3)

    # Backfill D2 (never published): its own model is trained, the gate keeps the newer champion,
    # and the day is scored with v1 - the champion after D2's nightly run would have been v1.
    backfill = load_config(overrides={**OVERRIDES, "publish.retention_partitions": 1})
    v2, gate2 = _train_and_gate(backfill, D2)
    assert not gate2.promote and tracking.champion_version(cfg, "mf_bpr") == v3.version
    caplog.set_level(logging.INFO, logger="recsys.steps.score")
    score_ds(backfill, D2)
    manifest = publish_ds(backfill, D2)
    assert manifest["model_version"] == v1.version  # not the champion v3, trained on D3
    assert manifest["scoring"]["models"]["model"]["rule"] == "backfill"
    assert f"backfill of ds={D2}" in caplog.text
    # Retention (keep 1) never deletes the partition it just published, backfill or not.
    assert io.list_partitions(cfg.paths.warehouse, RECOMMENDATIONS) == [D2, D3]
    assert set(_live(cfg, D2).model_version) == {v1.version}

    # A day older than every version: no model trained on data up to it; refuse unless told.
    with pytest.raises(LookupError, match="rescore-with-champion"):
        score_ds(cfg, D0)
    score_ds(cfg, D0, rescore_with_champion=True)
    assert _staged_version(cfg, D0) == {v3.version}


def test_backfill_model_trained_on_older_data_never_takes_champion_from_newer(cfg, capsys):
    from jobs import evaluate

    newer, gate = _train_and_gate(cfg, D2)
    assert gate.promote
    older, gate = _train_and_gate(cfg, D1)  # a backfill: trained on older data, good enough on metrics
    assert not gate.promote
    assert f"ds={D1}, older data than the champion (ds={D2})" in gate.reason, gate.reason
    assert "within tolerance" in gate.reason  # on metrics alone it would have been promoted
    assert tracking.champion_version(cfg, "mf_bpr") == newer.version
    client = MlflowClient()
    assert client.get_model_version(older.name, older.version).tags["gate"] == "rejected"

    # Forced, the metric comparison alone decides.
    assert evaluate.main(["--ds", D1, "--models", "mf_bpr", "--force-promote", *JOB_SETS]) == 0
    assert "mf_bpr: PROMOTED - --force-promote" in capsys.readouterr().out
    assert tracking.champion_version(cfg, "mf_bpr") == older.version
