"""The environment of the embedded (local) Airflow: every store under ``$RECSYS_HOME/airflow``.

Used by ``scripts/airflow.sh``, ``make demo`` and the Airflow end-to-end tests, so that the UI,
the scheduler, ``airflow dags test`` and the tasks they start all see the same metadata DB, the
same ``spark_default`` connection and the same ``RECSYS_HOME``. Nothing here imports Airflow:
settings travel as ``AIRFLOW__SECTION__KEY`` variables to the ``airflow`` subprocesses.

Private by default: the Airflow home is mode 0700, and the metadata DB, the secrets and the
passwords file are 0600 (created so, never readable by others even for a moment); the ``airflow``
subprocesses started from here run with umask 077. The api-server listens on 127.0.0.1 only.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from recsys.config import recsys_home
from recsys.schema import DS, INTERACTIONS

# Not 8793: that is Airflow's default worker log server port, which the scheduler itself binds
# (LocalExecutor). The log server gets ``port + 1``.
DEFAULT_PORT = 8780
GPU_POOL = "gpu"
# One training job at a time per GPU; on a CPU-only machine this also keeps two torch jobs from
# fighting over two cores. Raise it (airflow pools set gpu N ...) on a multi-GPU host.
GPU_POOL_SLOTS = 1

# The Airflow home and what it holds: only the owner may read them.
HOME_MODE = 0o700
FILE_MODE = 0o600
UMASK = 0o077


def _private_dir(path: Path) -> None:
    """``path`` (and missing parents) as a directory only its owner can enter."""
    path.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)
    path.chmod(HOME_MODE)  # mkdir's mode is filtered by the umask; an existing folder is tightened


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, a file that is mode 0600 from the moment it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), FILE_MODE)  # an existing file keeps its mode through O_CREAT
        f.write(text)


def _secret(airflow_home: Path, name: str) -> str:
    """A random secret kept in a file, so every Airflow process of this home shares it.

    The api-server signs the tokens the task workers present to the Execution API with
    ``jwt_secret``; a secret generated per process would make every task fail to authenticate.
    """
    _private_dir(airflow_home)
    path = airflow_home / f".{name}"
    if not path.exists() or not path.read_text().strip():
        _write_private(path, secrets.token_urlsafe(32))
    path.chmod(FILE_MODE)
    return path.read_text().strip()


def newest_landed_day(home: Path) -> str | None:
    """The newest ``ds`` with raw logs under the embedded landing folder, or None."""
    folder = Path(home) / "landing" / INTERACTIONS  # conf/base.yaml: ${RECSYS_HOME}/landing
    days = sorted(p.name.split("=", 1)[1] for p in folder.glob(f"{DS}=*") if p.is_dir()
                  and any(f.is_file() and not f.name.startswith((".", "_")) for f in p.iterdir()))
    return days[-1] if days else None


def secure_home(env: dict[str, str]) -> None:
    """Tighten an Airflow home made before these modes applied: home 0700, stores 0600."""
    af_home = Path(env["AIRFLOW_HOME"])
    _private_dir(af_home)
    db = Path(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///"))
    stores = [db, *(db.with_name(db.name + s) for s in ("-journal", "-wal", "-shm")),
              Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]),
              *af_home.glob(".*secret*")]
    for path in stores:
        if path.is_file():
            path.chmod(FILE_MODE)


def airflow_env(home: Path, repo: Path, *, port: int = DEFAULT_PORT,
                base: dict[str, str] | None = None) -> dict[str, str]:
    """The full environment (``base`` or ``os.environ`` plus overrides) for Airflow subprocesses.

    ``home`` is ``RECSYS_HOME``; Airflow lives in ``home/airflow`` (SQLite metadata DB, logs,
    failure records). ``repo`` is the repository root (``repo/dags`` is the DAGs folder).
    ``port`` is where ``airflow api-server`` listens (workers reach the Execution API there);
    the scheduler's task-log server listens on ``port + 1``.
    """
    home, repo = Path(home).resolve(), Path(repo).resolve()
    af_home = home / "airflow"
    venv_bin = str(Path(sys.executable).parent)
    env = dict(os.environ if base is None else base)
    url = f"http://127.0.0.1:{port}"
    env.update({
        "RECSYS_HOME": str(home),
        "AIRFLOW_HOME": str(af_home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{af_home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(repo / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # A 2-core machine: Spark (local[*]) and torch each want every core; two tasks at most.
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "2",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": _secret(af_home, "api_secret_key"),
        "AIRFLOW__API_AUTH__JWT_SECRET": _secret(af_home, "jwt_secret"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(af_home / "passwords.json"),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(af_home / "logs"),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(port + 1),
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        # The master is the connection's business, not the code's: a cluster URL in production.
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": "local[*]"}),
        "SPARK_LOCAL_IP": env.get("SPARK_LOCAL_IP", "127.0.0.1"),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        # The jobs' interpreter (the DAGs run `${RECSYS_PYTHON:-python} -m jobs.<x>`), named
        # outright rather than found on PATH: the mapped train task's bash found another python.
        "RECSYS_PYTHON": sys.executable,
        # No nightly schedule on the embedded default: its logs are generated, not delivered each
        # night, and unpausing a cron DAG queues the latest interval, a day without logs whose
        # sensor would hold every triggered run behind it for hours. Set the variable (a cron) to
        # schedule; backfills need one.
        "RECSYS_NIGHTLY_SCHEDULE": env.get("RECSYS_NIGHTLY_SCHEDULE", "none"),
        # The form's default ds: the newest day that has logs (empty when there is none).
        "RECSYS_DEFAULT_DS": env.get("RECSYS_DEFAULT_DS") or newest_landed_day(home) or "",
        "PATH": os.pathsep.join([venv_bin, env.get("PATH", "")]),
        # Helper modules next to the DAG files (dags/_recsys_dag_support.py) must import in every
        # Airflow process, deadline callbacks included.
        "PYTHONPATH": os.pathsep.join(p for p in [str(repo / "dags"), str(repo),
                                                  env.get("PYTHONPATH", "")] if p),
    })
    return env


def admin_password(env: dict[str, str]) -> str:
    """The local ``admin`` password, created on first use (SimpleAuthManager reads this file)."""
    path = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    if path.exists():
        path.chmod(FILE_MODE)
        users = json.loads(path.read_text() or "{}")
        if users.get("admin"):
            return users["admin"]
    _private_dir(path.parent)
    password = secrets.token_urlsafe(12)
    _write_private(path, json.dumps({"admin": password}) + "\n")
    return password


def _airflow(env: dict[str, str], *args: str) -> None:
    # umask 077: the metadata DB, its journal and the logs Airflow creates are the owner's only.
    subprocess.run([str(Path(sys.executable).parent / "airflow"), *args], env=env, check=True,
                   stdout=subprocess.DEVNULL, umask=UMASK)


def ensure_db(env: dict[str, str]) -> None:
    """Create or upgrade the metadata DB and the ``gpu`` pool, once per Airflow home and version.

    A stamp file records the Airflow version that migrated the DB, so repeated calls cost
    nothing; a deleted DB or an upgraded Airflow migrates again.
    """
    from importlib.metadata import version

    af_home = Path(env["AIRFLOW_HOME"])
    db = Path(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///"))
    stamp = af_home / ".db_migrated"
    wanted = version("apache-airflow-core")
    secure_home(env)
    if db.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return
    _airflow(env, "db", "migrate")
    _airflow(env, "pools", "set", GPU_POOL, str(GPU_POOL_SLOTS),
             "Training jobs that use the GPU (one per device)")
    stamp.write_text(wanted + "\n")
    secure_home(env)


def main(argv: list[str] | None = None) -> int:
    """``python -m recsys.localenv [--port N] env|init``: print the env as shell exports, or init."""
    import argparse
    import shlex

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("action", choices=["env", "init"])
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--home", type=Path, default=recsys_home())
    p.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent)
    args = p.parse_args(argv)
    env = airflow_env(args.home, args.repo, port=args.port)
    if args.action == "init":
        ensure_db(env)
        print(admin_password(env))
        return 0
    for key in sorted(env):
        if key.startswith(("AIRFLOW", "RECSYS_", "SPARK_", "PYSPARK_")) or key in ("PATH", "PYTHONPATH"):
            print(f"export {key}={shlex.quote(env[key])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
