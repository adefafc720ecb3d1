"""
### recsys_nightly — the nightly recommendation pipeline

For one logical date `ds`: wait for the day's raw logs → clean (Spark) → build the training set
(Spark) → train each model family (PyTorch + MLflow, one mapped task per family, limited by the
`gpu` pool) → evaluate and gate champion/challenger → score top-N into staging → validate →
publish atomically to `warehouse/recommendations/ds=<ds>/`, which updates the
`recsys_recommendations` asset (and so triggers `recsys_consumer`).

**Trigger with config** (the form): `ds` (empty = the run's logical date), `models`, `top_n`,
`epochs`, `force_publish`, `dry_run` (all steps but publish), `rescore_with_champion` (a rerun of
a published day scores with the version that served it unless this is set), `skip_training` (score
with the current champion; new users are folded in). Every step overwrites
only its own `ds` partition, so clearing a run or backfilling a range is safe to repeat; a failed
run leaves the published table as it was.

Failures are recorded under `$RECSYS_HOME/airflow/failures/`; a run still unfinished
`RECSYS_DEADLINE_MINUTES` (default 240) after it was queued raises a deadline alert recorded under
`$RECSYS_HOME/airflow/deadlines/`. See docs/airflow.md.
"""
from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.sensors.python import PythonSensor
from airflow.sdk import (
    DAG,
    Asset,
    CronDataIntervalTimetable,
    DeadlineAlert,
    DeadlineReference,
    Param,
    SyncCallback,
    TriggerRule,
    chain,
    task,
)
from airflow.sdk.exceptions import AirflowSkipException

# The helper module lives next to this file; a DAG bundle puts this folder on sys.path, a bare
# DagBag (tests, `python dags/recsys_nightly.py`) may not.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _recsys_dag_support import (  # noqa: E402
    DS_PATTERN,
    FAMILIES,
    RECOMMENDATIONS_ASSET,
    deadline_missed,
    raw_logs_present,
    record_failure,
    run_ds,
)

REPO = Path(__file__).resolve().parent.parent
RECOMMENDATIONS = Asset(**RECOMMENDATIONS_ASSET)
DS = "{{ run_ds(params, dag_run) }}"
PY = "${RECSYS_PYTHON:-python}"  # resolved by bash at run time: the job environment's python
# Environment knobs read at parse time (cheap, no I/O): how long to wait for raw logs, when a run
# counts as late, when runs are scheduled.
SENSOR_TIMEOUT = dt.timedelta(seconds=int(os.environ.get("RECSYS_SENSOR_TIMEOUT_S", 6 * 3600)))
DEADLINE = dt.timedelta(minutes=int(os.environ.get("RECSYS_DEADLINE_MINUTES", 240)))
# The nightly cron; "none" for deployments that trigger runs from outside (and for the REST
# end-to-end test, where a scheduled run would queue ahead of the triggered one).
CRON = os.environ.get("RECSYS_NIGHTLY_SCHEDULE", "0 2 * * *")
# The form's default ds. The embedded environment (recsys/localenv.py) sets it to the newest day
# of landed logs, so a first Trigger with the defaults processes a day that has data.
DEFAULT_DS = os.environ.get("RECSYS_DEFAULT_DS") or None

PARAMS = {
    # A text field, not format="date": the UI's date widget shows mm/dd/yyyy and turned a typed
    # 2026-13-45 into 61345-02-02. The pattern refuses impossible months and days before submit.
    "ds": Param(DEFAULT_DS, type=["null", "string"], pattern=DS_PATTERN,
                title="Date (ds)", description="Partition to process, YYYY-MM-DD (e.g. 2026-11-21). "
                "Empty: the run's logical date."),
    # The default is conf/base.yaml's train.models (tests/dags check they agree): ease_hybrid
    # serves the table (score.model), mf_bpr gives it candidates on large catalogs.
    "models": Param(["ease_hybrid", "mf_bpr"], type="array", title="Model families to train",
                    items={"type": "string", "enum": list(FAMILIES)}, examples=list(FAMILIES),
                    minItems=1, uniqueItems=True,
                    description="One training task per family; the gate compares each with its champion."),
    "top_n": Param(10, type="integer", minimum=1, maximum=1000, title="Top-N",
                   description="Recommendations per user in the published table."),
    "epochs": Param(None, type=["null", "integer"], minimum=1, title="Epochs override",
                    description="Empty: every model's own epochs from conf/models/."),
    "force_publish": Param(False, type="boolean", title="Force publish",
                           description="Publish despite failed reference checks (unknown users, "
                           "seen or unavailable items); structural checks always apply."),
    "dry_run": Param(False, type="boolean", title="Dry run",
                     description="Run every step but publish; the published table is untouched."),
    "rescore_with_champion": Param(False, type="boolean", title="Rescore with the champion",
                                   description="A rerun of a day already published scores with the "
                                   "model version that served it; set this to score with today's "
                                   "champion instead (jobs.score --rescore-with-champion)."),
    "skip_training": Param(False, type="boolean", title="Skip training",
                           description="Clean and build the day, then score with the current champion "
                           "without training or evaluating (the models list is unused); users new "
                           "since the champion's training day are folded in (source fold_in)."),
}

default_args = {
    "owner": "recsys",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "execution_timeout": dt.timedelta(hours=1),
    "on_failure_callback": record_failure,
}


def _job(task_id: str, args: str, timeout: dt.timedelta, **kwargs) -> BashOperator:
    """A `python -m jobs.<x>` step run in the job environment (cwd = repo root)."""
    return BashOperator(task_id=task_id, bash_command=f"{PY} -m jobs.{args}", cwd=str(REPO),
                        execution_timeout=timeout, skip_on_exit_code=None, **kwargs)


def _spark(task_id: str, script: str, timeout: dt.timedelta) -> SparkSubmitOperator:
    """A Spark step; the master comes from the `spark_default` connection."""
    return SparkSubmitOperator(task_id=task_id, conn_id="spark_default",
                               application=str(REPO / "jobs" / script),
                               application_args=["--ds", DS], name=f"recsys-{task_id}-{DS}",
                               execution_timeout=timeout)


with DAG(
    dag_id="recsys_nightly",
    description="Nightly: clean -> features -> train -> evaluate -> score -> validate -> publish",
    doc_md=__doc__,
    # ds = the logical date = the day whose logs are processed; its run starts at 02:00 UTC the
    # next day, when that day's logs have landed.
    schedule=None if CRON.lower() in ("", "none") else CronDataIntervalTimetable(CRON, timezone="UTC"),
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    # One run at a time: the champion/challenger gate must see days in order.
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(hours=8),
    default_args=default_args,
    params=PARAMS,
    user_defined_macros={"run_ds": run_ds},
    # RECSYS_DEADLINE_MINUTES=0 turns the alert off. `make demo` needs that: in Airflow 3.3.2,
    # `airflow dags test` crashes marking a run with a DeadlineAlert successful (it looks the
    # alert up by its serialized dict instead of its id).
    deadline=None if not DEADLINE else DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=DEADLINE,
        callback=SyncCallback(deadline_missed),
    ),
    tags=["recsys", "nightly", "spark", "pytorch", "mlflow"],
) as dag:
    wait_raw_logs = PythonSensor(
        task_id="wait_raw_logs",
        python_callable=raw_logs_present,
        op_kwargs={"ds": DS},
        mode="reschedule",
        poke_interval=60,
        timeout=SENSOR_TIMEOUT,
        execution_timeout=SENSOR_TIMEOUT + dt.timedelta(minutes=5),
    )
    clean = _spark("clean", "clean_interactions.py", dt.timedelta(hours=1))
    build_features = _spark("build_features", "build_features.py", dt.timedelta(hours=1))

    @task(execution_timeout=dt.timedelta(minutes=5))
    def plan_training(params: dict | None = None) -> list[dict[str, str]]:
        """One environment per family to train: the mapped `train` task's input. With
        `skip_training` this task is skipped, and with it `train` and `evaluate`."""
        if params.get("skip_training"):
            raise AirflowSkipException("skip_training: scoring with the current champion")
        return [{"RECSYS_TRAIN_MODEL": m} for m in params["models"]]

    train = BashOperator.partial(
        task_id="train",
        bash_command=(f'{PY} -m jobs.train --ds {DS} --models "$RECSYS_TRAIN_MODEL"'
                      "{% if params.epochs %} --epochs {{ params.epochs }}{% endif %}"),
        cwd=str(REPO),
        append_env=True,
        skip_on_exit_code=None,
        pool="gpu",
        execution_timeout=dt.timedelta(hours=3),
        map_index_template="{{ task.env['RECSYS_TRAIN_MODEL'] }}",
    ).expand(env=(plan := plan_training()))

    # Publish re-checks the table against score.top_n, so score, validate and publish share it.
    top_n = "--set score.top_n={{ params.top_n }}"
    evaluate = _job("evaluate", f"evaluate --ds {DS} --models {{{{ params.models | join(',') }}}}",
                    dt.timedelta(hours=1))
    score = _job("score", f"score --ds {DS} {top_n}"
                 "{% if params.rescore_with_champion %} --rescore-with-champion{% endif %}",
                 dt.timedelta(hours=2),
                 # Runs after a skipped evaluate (skip_training), never after a failed one.
                 trigger_rule=TriggerRule.NONE_FAILED)
    # The same checks publish runs, without publishing: a dry run still validates.
    validate = _job("validate", f"publish --ds {DS} {top_n} --validate-only", dt.timedelta(minutes=30))
    publish = BashOperator(
        task_id="publish",
        # Exit code 99 marks the task skipped: a dry run stops before touching the table.
        bash_command=("{% if params.dry_run %}echo 'dry run: not publishing'; exit 99{% endif %}\n"
                      f"{PY} -m jobs.publish --ds {DS} {top_n}"
                      "{% if params.force_publish %} --force{% endif %}"),
        cwd=str(REPO),
        skip_on_exit_code=99,
        execution_timeout=dt.timedelta(minutes=30),
        outlets=[RECOMMENDATIONS],
    )

    chain(wait_raw_logs, clean, build_features, plan, train, evaluate, score, validate, publish)
