"""DAG integrity: the DAGs import cleanly and follow the house rules; the form validates."""
from __future__ import annotations

import copy
import datetime as dt

import pytest

EXPECTED_DAGS = {"recsys_nightly", "recsys_consumer", "recsys_forget"}


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == EXPECTED_DAGS


def test_helper_module_is_not_parsed_as_a_dag_file(dagbag):
    parsed = {p.rsplit("/", 1)[-1] for p in dagbag.file_last_changed}
    assert parsed == {"recsys_nightly.py", "recsys_consumer.py", "recsys_forget.py"}


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_house_rules(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert "recsys" in dag.tags
    assert dag.doc_md and dag.doc_md.strip()
    assert dag.catchup is False
    assert dag.dagrun_timeout is not None
    assert dag.max_active_runs == 1
    for t in dag.tasks:
        assert t.retries >= 2, t.task_id
        assert t.retry_delay > dt.timedelta(0), t.task_id
        assert t.execution_timeout is not None, t.task_id
        assert t.on_failure_callback, t.task_id


def test_nightly_schedule_is_an_explicit_cron(nightly):
    assert nightly.timetable.expression == "0 2 * * *"
    assert nightly.timetable.timezone in ("UTC", dt.timezone.utc) or str(nightly.timetable.timezone) == "UTC"
    assert nightly.start_date.tzinfo is not None


def test_nightly_has_a_deadline_alert(nightly):
    (alert,) = nightly.deadline
    assert alert.interval > dt.timedelta(0)
    assert alert.callback.path == "_recsys_dag_support.deadline_missed"


def test_consumer_is_scheduled_on_the_published_asset(nightly, consumer):
    (outlet,) = nightly.get_task("publish").outlets
    assert outlet.name == "recsys_recommendations"
    assert list(consumer.timetable.asset_condition.objects) == [outlet]


# ---- the trigger form -------------------------------------------------------------------------


def _validate(dag, conf):
    """What Airflow does with a run's conf: each key must pass its Param's JSON schema."""
    params = copy.deepcopy(dag.params)
    for key, value in conf.items():
        params[key] = value
    return params.validate()


def test_param_defaults_validate(nightly):
    resolved = nightly.params.validate()
    assert resolved == {"ds": None, "models": ["ease_hybrid", "mf_bpr"], "top_n": 10, "epochs": None,
                        "force_publish": False, "dry_run": False,
                        "rescore_with_champion": False, "skip_training": False}


def test_form_defaults_follow_the_config(nightly, monkeypatch, tmp_path):
    """The form's default models and top-N are the configuration's, and they train the family
    that serves the table: a run with the defaults must not publish from a stale champion (or
    fail for want of one) because the form and conf/base.yaml drifted apart."""
    from recsys.config import load_config

    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    cfg = load_config(env="local")
    resolved = nightly.params.validate()
    assert resolved["models"] == list(cfg.train.models)
    assert resolved["top_n"] == cfg.score.top_n
    assert cfg.score.model in resolved["models"]
    assert cfg.score.candidates_model in resolved["models"]


@pytest.mark.parametrize("conf", [
    {"ds": "2024-03-01"},
    {"models": ["mf_bpr", "ease", "popularity"]},
    {"top_n": 1}, {"top_n": 1000},
    {"epochs": 3}, {"epochs": None},
    {"force_publish": True, "dry_run": True},
    {"rescore_with_champion": True}, {"skip_training": True},
])
def test_valid_conf_is_accepted(nightly, conf):
    _validate(nightly, conf)


@pytest.mark.parametrize("conf", [
    {"top_n": 0}, {"top_n": 1001}, {"top_n": "10"},
    {"models": ["bogus"]}, {"models": []}, {"models": ["mf_bpr", "mf_bpr"]}, {"models": "mf_bpr"},
    {"ds": "2024-13-01"}, {"ds": "20240301"}, {"ds": "yesterday"},
    {"epochs": 0},
    {"dry_run": "yes"}, {"rescore_with_champion": "yes"}, {"skip_training": 1},
])
def test_bad_conf_is_rejected(nightly, conf):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        _validate(nightly, conf)


def test_every_family_in_the_form(nightly):
    families = nightly.params.get_param("models").schema["items"]["enum"]
    from recsys.models.registry import model_names

    assert sorted(families) == model_names()
