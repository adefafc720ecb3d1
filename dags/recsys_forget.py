"""
### recsys_forget — the right to be forgotten

Trigger with the form's `users` (a list of user ids). One task runs `python -m jobs.forget`
(`recsys/steps/forget.py`): it records the users in the tombstone `warehouse/erasures/` (a keyed
hash, never the id), so later raw logs of theirs are quarantined as `erased_user` without their
payload; tags the registered model versions trained on their data `erased_users_pending=true`,
so the next `recsys_nightly` gate replaces such a champion with the new version; and rewrites,
partition by partition with an atomic swap, every warehouse table that holds them (clean
interactions, quarantine payloads, user profiles, training sets, published recommendations,
model vectors, a table staged for publish) and the consumer's CSV export. It then searches the
warehouse for any trace left and fails if it finds one. Running it again is harmless.

Trigger it when `recsys_nightly` is not running: a nightly publishing at the same time could put
back a partition it scored before the erasure. See docs/privacy.md.
"""
from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _recsys_dag_support import record_failure  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PY = "${RECSYS_PYTHON:-python}"  # resolved by bash at run time: the job environment's python

with DAG(
    dag_id="recsys_forget",
    description="Erase users from the warehouse and tombstone them (right to be forgotten)",
    doc_md=__doc__,
    schedule=None,  # on request only
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(hours=4),
    params={
        "users": Param([], type="array", minItems=1, uniqueItems=True,
                       items={"type": "string", "minLength": 1, "maxLength": 128},
                       title="User ids to forget",
                       description="External user ids, as in the user_id column of the tables."),
    },
    default_args={
        "owner": "recsys",
        "retries": 2,
        "retry_delay": dt.timedelta(minutes=2),
        "execution_timeout": dt.timedelta(hours=3),
        "on_failure_callback": record_failure,
    },
    tags=["recsys", "privacy"],
):
    # The ids travel in an environment variable, quoted by bash: never spliced into the command.
    BashOperator(
        task_id="forget",
        bash_command=f'{PY} -m jobs.forget --users-json "$RECSYS_FORGET_USERS"',
        env={"RECSYS_FORGET_USERS": "{{ params.users | tojson }}"},
        append_env=True,
        cwd=str(REPO),
        skip_on_exit_code=None,
    )
