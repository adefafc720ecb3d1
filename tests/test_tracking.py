"""MLflow side of training: a real SQLite-backed store and registry under a temp RECSYS_HOME."""
from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from recsys import tracking as run
from recsys.evaluate.gate import GateDecision
from recsys.interactions import Interactions
from recsys.models.base import FitOptions
from recsys.models.bundle import ModelBundle


def _blocks(n_users=40, n_items=20, seed=0) -> Interactions:
    # Two taste groups: even users like items 0..9, odd users items 10..19.
    rng = np.random.default_rng(seed)
    u = np.repeat(np.arange(n_users), 6)
    base = np.where(u % 2 == 0, 0, 10)
    i = base + rng.integers(0, 10, len(u))
    return Interactions(u.astype(np.int64), i.astype(np.int64), np.ones(len(u), np.float32), n_users, n_items)


@pytest.fixture()
def trained(config):
    data = _blocks()
    users = np.array([f"u{k}" for k in range(data.n_users)])
    items = np.array([f"i{k}" for k in range(data.n_items)])
    result = run.train_and_log(config, "mf_bpr", data, users, items, ds="2026-01-02",
                               options=FitOptions(epochs=3), lineage={"path": "/tmp/x", "rows": len(data)},
                               dq_summary={"raw": 10, "clean": 9})
    return config, result, users, items


def test_run_logs_params_epoch_metrics_and_registers_version(trained):
    config, result, _, _ = trained
    client = MlflowClient()
    r = client.get_run(result.run_id)
    assert r.data.params["ds"] == "2026-01-02"
    assert r.data.params["model.factors"] == str(config.model_params("mf_bpr")["factors"])
    assert len(client.get_metric_history(result.run_id, "fit/loss")) == 3
    assert r.data.metrics["quality/raw"] == 10
    mv = client.get_model_version(result.name, result.version)
    assert mv.run_id == result.run_id and mv.tags["ds"] == "2026-01-02"
    assert run.latest_version_for_ds(config, "mf_bpr", "2026-01-02") == result.version
    assert run.latest_version_for_ds(config, "mf_bpr", "2026-01-03") is None
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"learning_curve.png", "lineage.json", "dq_summary.json"} <= artifacts


def test_champion_alias_loads_through_models_uri_and_pyfunc(trained):
    config, result, users, items = trained
    assert run.champion_version(config, "mf_bpr") is None
    with pytest.raises(LookupError, match="champion"):
        run.load_model(config, "mf_bpr")
    loaded_v = run.load_version(config, "mf_bpr", result.version)
    run.record_gate(config, "mf_bpr", loaded_v, None, GateDecision(True, "first version", None, 0.5),
                    {"ndcg@10": 0.5}, None)
    champ = run.load_model(config, "mf_bpr")
    assert champ.version == result.version and champ.run_id == result.run_id
    assert list(champ.bundle.user_ids) == list(users)
    # The generic MLflow face scores (user_id, item_id) pairs; unknown ids give NaN.
    pyfunc = mlflow.pyfunc.load_model(f"models:/{result.name}@champion")
    scores = pyfunc.predict(pd.DataFrame({"user_id": ["u0", "u1", "nobody"], "item_id": ["i1", "i2", "i1"]}))
    expected = champ.model.score(np.array([0, 1]), np.array([1, 2]))
    np.testing.assert_allclose(scores[:2], expected, rtol=1e-5)
    assert np.isnan(scores[2])
    by_uri = run.load_model_uri(f"models:/{result.name}@champion")
    assert by_uri.version == result.version
    # Logged as code ("models from code"), not as a pickled object: nothing to unpickle.
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{result.name}/{result.version}"))
    flavor = mlflow.models.Model.load(str(local / "MLmodel")).flavors["python_function"]
    assert flavor["model_code_path"].endswith("pyfunc_model.py") and "python_model" not in flavor
    assert not [p for p in local.rglob("*") if p.suffix in (".pkl", ".pickle", ".cloudpickle")]


def test_rejected_challenger_keeps_alias(trained):
    config, first, users, items = trained
    run.record_gate(config, "mf_bpr", run.load_version(config, "mf_bpr", first.version), None,
                    GateDecision(True, "first", None, 0.5), {"ndcg@10": 0.5}, None)
    second = run.train_and_log(config, "mf_bpr", _blocks(seed=1), users, items, ds="2026-01-03",
                               options=FitOptions(epochs=1))
    challenger = run.load_version(config, "mf_bpr", second.version)
    run.record_gate(config, "mf_bpr", challenger, run.load_model(config, "mf_bpr"),
                    GateDecision(False, "worse", 0.5, 0.1), {"ndcg@10": 0.1}, {"ndcg@10": 0.5})
    assert run.champion_version(config, "mf_bpr") == first.version
    assert MlflowClient().get_model_version(second.name, second.version).tags["gate"] == "rejected"


def test_bundle_maps_ids_to_model_indices(tmp_path):
    from recsys.models import build_model

    data = _blocks()
    model = build_model("mf_bpr", {"epochs": 1}).fit(data, FitOptions())
    b = ModelBundle(model, np.array([f"u{k}" for k in range(40)]), np.array([f"i{k}" for k in range(20)]))
    b.save(tmp_path / "b")
    back = ModelBundle.load(tmp_path / "b")
    assert list(back.user_index(np.array(["u3", "zz", "u0"]))) == [3, -1, 0]
    assert list(back.item_index(np.array(["i19"]))) == [19]
    np.testing.assert_allclose(back.model.score(np.array([3]), np.array([4])),
                               model.score(np.array([3]), np.array([4])))


def test_runs_land_in_configured_experiment_and_cwd_stays_empty(config, tmp_path, monkeypatch):
    from recsys.cli import main as cli
    from recsys.config import load_config
    from recsys.steps.evaluate import evaluate_families
    from recsys.steps.train import train_families
    from tests.steps.test_gate_flow import write_training_set

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    ds = "2026-03-01"
    write_training_set(config.paths.warehouse, ds, users_per_group=8)
    cfg = load_config(overrides={"models.mf_bpr.factors": 4, "models.mf_bpr.batch_size": 256})
    (result,) = train_families(cfg, ds, ["mf_bpr"], epochs=1, progress=False)
    assert evaluate_families(cfg, ds, ["mf_bpr"])["mf_bpr"].promote  # the first version
    pairs, out = tmp_path / "pairs.csv", tmp_path / "scored.csv"
    pairs.write_text("user_id,item_id\nuser000,item001\n")
    assert cli(["score-pairs", "--model-uri", f"models:/{result.name}@champion",
                "--pairs", str(pairs), "--out", str(out)]) == 0
    assert out.exists()

    assert sorted(p.name for p in cwd.iterdir()) == []  # no ./mlruns, nothing else
    exp = mlflow.get_experiment_by_name(cfg.mlflow.experiment)
    r = MlflowClient().get_run(result.run_id)
    assert r.info.experiment_id == exp.experiment_id != "0"
    assert exp.artifact_location.removeprefix("file://").rstrip("/") == cfg.mlflow.artifact_location
    assert r.info.artifact_uri.removeprefix("file://").startswith(cfg.mlflow.artifact_location)
    assert list(Path(cfg.mlflow.artifact_location).rglob("bundle/model.pt"))  # the version's files


def test_run_left_running_by_killed_task_is_marked_failed(config):
    ds = "2026-01-02"
    exp_id = run.setup(config)
    client = MlflowClient()
    tags = {"ds": ds, "family": "mf_bpr", "step": "train"}
    killed = client.create_run(exp_id, tags=tags, run_name="mf_bpr-killed").info.run_id
    other_ds = client.create_run(exp_id, tags={**tags, "ds": "2026-01-01"}).info.run_id
    other_family = client.create_run(exp_id, tags={**tags, "family": "ease"}).info.run_id
    assert client.get_run(killed).info.status == "RUNNING"

    data = _blocks()
    result = run.train_and_log(config, "mf_bpr", data, np.array([f"u{k}" for k in range(40)]),
                               np.array([f"i{k}" for k in range(20)]), ds=ds,
                               options=FitOptions(epochs=1))
    old = client.get_run(killed)
    assert old.info.status == "FAILED" and old.info.end_time is not None
    assert "killed" in old.data.tags["failed_reason"]
    assert client.get_run(result.run_id).info.status == "FINISHED"
    # Runs of another ds or another family are not this attempt's business.
    assert client.get_run(other_ds).info.status == "RUNNING"
    assert client.get_run(other_family).info.status == "RUNNING"
