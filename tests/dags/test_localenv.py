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
    assert env["RECSYS_PYTHON"] == sys.executable  # the DAGs run ${RECSYS_PYTHON:-python} -m jobs.x


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


# -- closed by default: the local Airflow's stores are the owner's only --------------------------
def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _fake_migrate(env: dict[str, str], *args: str) -> None:
    """Stands in for `airflow db migrate`: creates the DB as a process with umask 022 would."""
    import os
    import sqlite3

    if args[:2] == ("db", "migrate"):
        db = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
        old = os.umask(0o022)
        try:
            sqlite3.connect(db).execute("create table if not exists t (x)").connection.close()
        finally:
            os.umask(old)


def test_local_airflow_db_secrets_and_passwords_are_private(tmp_path, monkeypatch):
    import os

    from recsys import localenv

    monkeypatch.setattr(localenv, "_airflow", _fake_migrate)
    old = os.umask(0o022)  # a permissive caller: the modes must not depend on its umask
    try:
        env = airflow_env(tmp_path / "var", REPO, base={})
        localenv.ensure_db(env)
        admin_password(env)
    finally:
        os.umask(old)
    af = tmp_path / "var" / "airflow"
    assert _mode(af) == 0o700
    assert _mode(af / "airflow.db") == 0o600
    assert _mode(af / "passwords.json") == 0o600
    assert _mode(af / ".jwt_secret") == 0o600 and _mode(af / ".api_secret_key") == 0o600
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"


def test_local_airflow_modes_are_tightened_on_an_existing_home(tmp_path, monkeypatch):
    # A home created before the fix (0755 folder, 0644 DB, secrets and passwords) is tightened.
    from recsys import localenv

    env = airflow_env(tmp_path, REPO, base={})
    admin_password(env)
    af = Path(env["AIRFLOW_HOME"])
    (af / "airflow.db").write_text("")
    for path in [af, *af.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    monkeypatch.setattr(localenv, "_airflow", _fake_migrate)
    airflow_env(tmp_path, REPO, base={})
    localenv.ensure_db(env)
    assert _mode(af) == 0o700
    for name in (".api_secret_key", ".jwt_secret", "passwords.json", "airflow.db"):
        assert _mode(af / name) == 0o600, name


def test_airflow_subprocesses_run_with_umask_077(tmp_path, monkeypatch):
    from recsys import localenv

    seen = {}
    monkeypatch.setattr(localenv.subprocess, "run", lambda *a, **kw: seen.update(kw))
    localenv._airflow(airflow_env(tmp_path, REPO, base={}), "version")
    assert seen["umask"] == 0o077


def test_airflow_script_sets_umask_077():
    script = (REPO / "scripts" / "airflow.sh").read_text().splitlines()
    first_command = next(i for i, line in enumerate(script) if line.startswith(("cd ", "REPO=")))
    assert "umask 077" in script[:first_command]
