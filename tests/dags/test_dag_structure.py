"""The task graph of recsys_nightly and the commands its tasks render for a given form."""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

EDGES = {
    ("wait_raw_logs", "clean"),
    ("clean", "build_features"),
    ("build_features", "plan_training"),
    ("plan_training", "train"),
    ("train", "evaluate"),
    ("evaluate", "score"),
    ("score", "validate"),
    ("validate", "publish"),
}


def test_task_graph_is_the_pipeline(nightly):
    edges = {(t.task_id, d) for t in nightly.tasks for d in t.downstream_task_ids}
    assert edges == EDGES


def test_spark_steps_use_the_spark_default_connection(nightly):
    from airflow.providers.apache.spark.operators.spark_submit import (
        SparkSubmitOperator,
    )

    for task_id, script in [("clean", "clean_interactions.py"), ("build_features", "build_features.py")]:
        t = nightly.get_task(task_id)
        assert isinstance(t, SparkSubmitOperator)
        assert t._conn_id == "spark_default"
        assert t.application.endswith(f"jobs/{script}")


def test_train_is_mapped_per_family_in_the_gpu_pool(nightly):
    train = nightly.get_task("train")
    assert train.partial_kwargs["pool"] == "gpu"
    assert "env" in train.expand_input.value
    assert train.partial_kwargs["append_env"] is True


def test_sensor_reschedules_and_times_out(nightly):
    sensor = nightly.get_task("wait_raw_logs")
    assert sensor.mode == "reschedule"
    assert 0 < sensor.timeout <= 24 * 3600


# ---- rendered commands ------------------------------------------------------------------------

RUN = SimpleNamespace(logical_date=dt.datetime(2024, 5, 6, 2, tzinfo=dt.timezone.utc),
                      run_after=dt.datetime(2024, 5, 7, 2, tzinfo=dt.timezone.utc))
DEFAULTS = {"ds": None, "models": ["ease_hybrid", "mf_bpr"], "top_n": 10, "epochs": None,
            "force_publish": False, "dry_run": False,
            "rescore_with_champion": False, "skip_training": False}


def _render(dag, task_id, field, **params):
    task = dag.get_task(task_id)
    context = {"params": {**DEFAULTS, **params}, "dag_run": RUN}
    return task.render_template(getattr(task, field), context, jinja_env=dag.get_template_env())


def test_ds_defaults_to_the_logical_date_and_the_form_overrides_it(nightly):
    assert _render(nightly, "clean", "application_args") == ["--ds", "2024-05-06"]
    assert _render(nightly, "clean", "application_args", ds="2024-01-31") == ["--ds", "2024-01-31"]


def test_evaluate_and_score_follow_the_form(nightly):
    cmd = _render(nightly, "evaluate", "bash_command", models=["mf_bpr", "ease"])
    assert cmd.endswith("-m jobs.evaluate --ds 2024-05-06 --models mf_bpr,ease")
    cmd = _render(nightly, "score", "bash_command", top_n=25)
    assert cmd.endswith("-m jobs.score --ds 2024-05-06 --set score.top_n=25")
    cmd = _render(nightly, "score", "bash_command", rescore_with_champion=True)
    assert cmd.endswith("-m jobs.score --ds 2024-05-06 --set score.top_n=10 --rescore-with-champion")


def test_validate_checks_against_the_same_top_n(nightly):
    cmd = _render(nightly, "validate", "bash_command", top_n=7)
    assert cmd.endswith("-m jobs.publish --ds 2024-05-06 --set score.top_n=7 --validate-only")


def test_train_command_passes_epochs_only_when_set(nightly):
    task = nightly.get_task("train")
    env = nightly.get_template_env()
    render = lambda **p: task.render_template(task.partial_kwargs["bash_command"],  # noqa: E731
                                              {"params": {**DEFAULTS, **p}, "dag_run": RUN},
                                              jinja_env=env)
    assert render().endswith('-m jobs.train --ds 2024-05-06 --models "$RECSYS_TRAIN_MODEL"')
    assert render(epochs=3).endswith('--models "$RECSYS_TRAIN_MODEL" --epochs 3')


@pytest.mark.parametrize("params, publishes, force", [
    ({}, True, False),
    ({"force_publish": True}, True, True),
    ({"dry_run": True}, False, False),
])
def test_publish_honours_dry_run_and_force(nightly, params, publishes, force):
    cmd = _render(nightly, "publish", "bash_command", **params)
    assert ("exit 99" in cmd) is not publishes
    assert ("--force" in cmd) is force
    assert "-m jobs.publish --ds 2024-05-06 --set score.top_n=10" in cmd
    assert nightly.get_task("publish").skip_on_exit_code == [99]


def test_dry_run_skips_publish_in_bash(nightly, tmp_path):
    """The rendered dry-run command really exits 99 (skip) before running the job."""
    import subprocess

    cmd = _render(nightly, "publish", "bash_command", dry_run=True)
    done = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "RECSYS_PYTHON": "false"})
    assert done.returncode == 99
    assert "dry run" in done.stdout


@pytest.mark.parametrize("value, ok", [
    ("2026-11-21", True), (None, True),
    ("2026-13-45", False), ("11/21/2026", False), ("61345-02-02", False), ("2026-1-5", False),
])
def test_form_ds_refuses_impossible_dates_before_submit(nightly, value, ok):
    # Issue 14: the date widget turned a typed 2026-13-45 into 61345-02-02 and kept Trigger enabled.
    from airflow.sdk.definitions.param import Param

    spec = nightly.params.get_param("ds")
    assert "format" not in spec.schema  # a text field, not the mm/dd/yyyy-localised date widget
    param = Param(value, **spec.schema)
    if ok:
        assert param.resolve() == value
    else:
        with pytest.raises(Exception, match="does not match|is not valid"):
            param.resolve()


def test_run_ds_refuses_a_date_the_calendar_does_not_have():
    from _recsys_dag_support import run_ds

    with pytest.raises(ValueError, match="params.ds must be a date"):
        run_ds({"ds": "2026-02-31"}, None)


def test_consumer_starts_unpaused(consumer):
    # Issue 14: the consumer was paused, so "runs after each publish" never happened.
    assert consumer.is_paused_upon_creation is False


def test_skip_training_skips_train_and_evaluate_but_scores(nightly):
    """`skip_training`: plan_training skips (so the mapped train and evaluate are skipped by the
    default trigger rule) and score still runs after a skipped evaluate, but not a failed one."""
    from airflow.sdk.exceptions import AirflowSkipException

    plan = nightly.get_task("plan_training").python_callable
    assert plan(params={**DEFAULTS, "models": ["mf_bpr"]}) == [{"RECSYS_TRAIN_MODEL": "mf_bpr"}]
    with pytest.raises(AirflowSkipException):
        plan(params={**DEFAULTS, "skip_training": True})
    assert nightly.get_task("evaluate").trigger_rule == "all_success"
    assert nightly.get_task("score").trigger_rule == "none_failed"
    assert nightly.get_task("validate").trigger_rule == "all_success"
