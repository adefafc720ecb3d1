"""The embedded Airflow's environment: one home, shared secrets, the spark_default connection."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from recsys.localenv import admin_password, airflow_env

REPO = Path(__file__).resolve().parents[2]


def test_everything_lives_under_recsys_home(tmp_path):
    env = airflow_env(tmp_path / "var", REPO, port=9001, base={"PATH": "/usr/bin"})
    af = tmp_path / "var" / "airflow"
    assert env["RECSYS_HOME"] == str(tmp_path / "var")
    assert env["AIRFLOW_HOME"] == str(af)
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{af / 'airflow.db'}"
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO / "dags")
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert int(env["AIRFLOW__CORE__PARALLELISM"]) <= 2
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:9001/execution/"
    assert env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == "9002"
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert env["PYSPARK_PYTHON"] == sys.executable


def test_spark_default_is_a_local_master(tmp_path):
    conn = json.loads(airflow_env(tmp_path, REPO, base={})["AIRFLOW_CONN_SPARK_DEFAULT"])
    assert conn == {"conn_type": "spark", "host": "local[*]"}


def test_secrets_are_shared_by_every_call_for_one_home(tmp_path):
    a, b = airflow_env(tmp_path, REPO, base={}), airflow_env(tmp_path, REPO, base={})
    other = airflow_env(tmp_path / "other", REPO, base={})
    assert a["AIRFLOW__API_AUTH__JWT_SECRET"] == b["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert a["AIRFLOW__API_AUTH__JWT_SECRET"] != other["AIRFLOW__API_AUTH__JWT_SECRET"]


def test_admin_password_is_created_once(tmp_path):
    env = airflow_env(tmp_path, REPO, base={})
    first = admin_password(env)
    assert len(first) >= 12 and admin_password(env) == first
    users = json.loads(Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).read_text())
    assert users == {"admin": first}


def test_embedded_default_has_no_schedule_and_the_form_defaults_to_the_newest_landed_day(tmp_path):
    # Issue 14: unpausing the cron DAG (the form's "Unpause on trigger" is ticked by default)
    # queued yesterday, a day the demo never generated, whose sensor held the user's run for hours.
    home = tmp_path / "var"
    env = airflow_env(home, REPO, base={})
    assert env["RECSYS_NIGHTLY_SCHEDULE"] == "none" and env["RECSYS_DEFAULT_DS"] == ""
    for day, files in (("2026-11-20", ["a.jsonl"]), ("2026-11-21", ["b.csv"]), ("2026-11-22", ["_SUCCESS"])):
        folder = home / "landing" / "interactions" / f"ds={day}"
        folder.mkdir(parents=True)
        for name in files:
            (folder / name).write_text("x\n")
    env = airflow_env(home, REPO, base={})
    assert env["RECSYS_DEFAULT_DS"] == "2026-11-21"  # 11-22 holds no data file
    chosen = airflow_env(home, REPO, base={"RECSYS_NIGHTLY_SCHEDULE": "0 2 * * *"})
    assert chosen["RECSYS_NIGHTLY_SCHEDULE"] == "0 2 * * *"
