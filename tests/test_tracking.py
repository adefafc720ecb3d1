"""MLflow side of training: a real SQLite-backed store and registry under a temp RECSYS_HOME."""
from __future__ import annotations

import json
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


# --- what the MLflow UI shows: run page sections, the runs view, the gate, the dataset -------

def _ui_sections(metric_keys) -> list[tuple[str, list[str]]]:
    """The run page's chart sections as MLflow 3 builds them: named by the part of a metric name
    before its last "/", in alphabetical order, then the names without a "/" ("Model metrics");
    charts alphabetical inside a section."""
    sections: dict[str, list[str]] = {}
    for key in metric_keys:
        sections.setdefault(key.rsplit("/", 1)[0] if "/" in key else "", []).append(key)
    named = sorted(s for s in sections if s)
    return [(s, sorted(sections[s])) for s in named + ([""] if "" in sections else [])]


@pytest.fixture()
def gated(config):
    """Two versions of mf_bpr trained with a validation set, the second rejected by the gate."""
    users = np.array([f"u{k}" for k in range(40)])
    items = np.array([f"i{k}" for k in range(20)])
    results = []
    for day, seed in (("2026-01-02", 0), ("2026-01-03", 1)):
        results.append(run.train_and_log(
            config, "mf_bpr", _blocks(seed=seed), users, items, ds=day,
            options=FitOptions(epochs=3, validation=_blocks(seed=seed + 10)),
            lineage={"path": str(config.paths.warehouse / "training_set" / f"ds={day}"),
                     "rows": 300, "validation_rows": 40},
            dq_summary={"raw": 10, "clean": 9, "reasons": {"x": 1}}))
    first = run.load_version(config, "mf_bpr", results[0].version)
    run.record_gate(config, "mf_bpr", first, None, GateDecision(True, "first", None, 0.5),
                    {"ndcg@10": 0.5, "precision@10": 0.1, "recall@10": 0.4}, None, ds="2026-01-02")
    second = run.load_version(config, "mf_bpr", results[1].version)
    run.record_gate(config, "mf_bpr", second, first, GateDecision(False, "worse by 0.4", 0.5, 0.1),
                    {"ndcg@10": 0.1, "precision@10": 0.05, "recall@10": 0.2},
                    {"ndcg@10": 0.5, "precision@10": 0.1, "recall@10": 0.4})
    return config, results


def test_run_page_opens_on_the_learning_curve_not_dq_bars(gated):
    # Regression: the run page's first charts were the dq.* single-value bars ("dq." sorted
    # first among un-sectioned names); the learning curve came later, without validation.
    config, (_, second) = gated
    keys = MlflowClient().get_run(second.run_id).data.metrics
    sections = _ui_sections(keys)
    first_section, first_charts = sections[0]
    assert first_section == run.FIT
    assert first_charts[:2] == ["fit/loss", "fit/val_ndcg_at_10"]
    assert len(MlflowClient().get_metric_history(second.run_id, "fit/val_ndcg_at_10")) == 3
    names = [s for s, _ in sections]
    assert names == ["fit", "holdout", "holdout/champion", "quality", "throughput", ""], names
    assert "quality/raw" in keys and not any(k.startswith("dq") for k in keys)
    assert "quality/reasons" not in keys  # only numbers are metrics


def test_runs_view_shows_ranking_metric_columns_that_have_values(gated):
    config, results = gated
    client = MlflowClient()
    exp = client.get_experiment_by_name(config.mlflow.experiment)
    envelope = json.loads(exp.tags["mlflow.sharedViewState." + run.RUNS_VIEW_ID])
    assert envelope["name"] == run.RUNS_VIEW_NAME and isinstance(envelope["createdAt"], int)
    state = json.loads(envelope["state"])
    columns = run.runs_view_columns(config)
    assert columns[:4] == ["holdout/ndcg_at_10", "holdout/precision_at_10", "holdout/recall_at_10",
                           "fit/val_ndcg_at_10"]
    assert state["selectedColumns"][:len(columns)] == [f"metrics.`{c}`" for c in columns]
    for result in results:  # every column has a value in every gated run
        assert set(columns) <= set(client.get_run(result.run_id).data.metrics)
    # setup() leaves a current view alone (no write per task) and rewrites a stale one.
    run.setup(config)
    again = client.get_experiment_by_name(config.mlflow.experiment).tags
    assert json.loads(again["mlflow.sharedViewState." + run.RUNS_VIEW_ID]) == envelope
    client.set_experiment_tag(exp.experiment_id, "mlflow.sharedViewState." + run.RUNS_VIEW_ID, "{}")
    run.setup(config)
    fixed = client.get_experiment_by_name(config.mlflow.experiment).tags
    assert json.loads(json.loads(fixed["mlflow.sharedViewState." + run.RUNS_VIEW_ID])["state"]) == state
    assert run.runs_view_url("http://h:5000/", exp.experiment_id) == (
        f"http://h:5000/#/experiments/{exp.experiment_id}/runs?viewStateShareKey={run.RUNS_VIEW_ID}")


def test_runs_view_leads_with_the_configured_gate_metric(recsys_home):
    from recsys.config import load_config

    cfg = load_config(overrides={"evaluate.k": 5, "evaluate.metric": "map@5"})
    assert run.runs_view_columns(cfg)[:4] == ["holdout/map_at_5", "holdout/ndcg_at_5",
                                              "holdout/precision_at_5", "holdout/recall_at_5"]


def test_model_version_page_shows_the_gate_decision(gated):
    config, (first, second) = gated
    client = MlflowClient()
    rejected = client.get_model_version(second.name, second.version)
    tags = rejected.tags
    assert tags["gate"] == "rejected" and tags["gate.metric"] == "ndcg@10"
    assert (tags["gate.challenger_value"], tags["gate.champion_value"]) == ("0.1000", "0.5000")
    assert tags["gate.champion_version"] == first.version and tags["gate.holdout_ds"] == "2026-01-03"
    assert tags["gate.tolerance"] == str(config.evaluate.tolerance)
    text = rejected.description
    assert text.startswith("**Gate: rejected, the champion stays.** ndcg@10 on the held-out slice "
                           "of ds=2026-01-03")
    assert f"| challenger | v{second.version} | ds=2026-01-03 | 0.1000 |" in text
    # The champion's day comes from its version's ds tag when the caller does not pass it.
    assert f"| champion | v{first.version} | ds=2026-01-02 | 0.5000 |" in text
    assert f"tolerance {config.evaluate.tolerance}" in text and "Reason: worse by 0.4" in text
    assert client.get_run(second.run_id).data.tags["mlflow.note.content"] == text
    promoted = client.get_model_version(first.name, first.version)
    assert promoted.description.startswith("**Gate: promoted to champion.**")
    assert "| champion | none yet |" in promoted.description
    assert promoted.tags["gate.champion_version"] == "none"
    assert promoted.aliases == ["champion"]


def test_training_set_is_a_dataset_input_with_its_partition_as_source(gated):
    config, (first, _) = gated
    (inp,) = MlflowClient().get_run(first.run_id).inputs.dataset_inputs
    ds = inp.dataset
    part = config.paths.warehouse / "training_set" / "ds=2026-01-02"
    assert ds.name == "training_set@2026-01-02" and ds.source_type == "local"
    assert json.loads(ds.source) == {"uri": str(part)}  # readable: ds=, not ds%3D
    assert len(ds.digest) >= 8
    assert json.loads(ds.profile)["num_rows"] == len(_blocks())
    assert {"user_idx", "item_idx", "weight"} <= {c["name"] for c in json.loads(ds.schema)["mlflow_colspec"]}
    tags = {t.key: t.value for t in inp.tags}
    assert tags["mlflow.data.context"] == "training" and tags["ds"] == "2026-01-02"
    assert (tags["rows"], tags["train_rows"], tags["validation_rows"]) == ("300", str(len(_blocks())), "40")
