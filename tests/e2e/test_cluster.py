"""The Spark steps, unchanged, on a real Spark standalone cluster (scripts/cluster.sh).

One cluster (a master and 2 workers of 1 core on 127.0.0.1; the session fixture of
tests/e2e/conftest.py) serves every cluster test: it is started once and always stopped. A small generated day is cleaned and turned into a training set in
local mode (local[2], in this process) and on the cluster, through the jobs' own command lines
(`spark-submit --master spark://...`, `RECSYS_ENV=standalone python -m jobs...`), into separate
warehouses: every table and the clean step's books must be equal. The last test kills a worker
with SIGKILL in the middle of the clean step.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recsys.config import load_config
from tests.e2e._cluster import (
    DS,
    ROOT,
    assert_same_parquet,
    finish_job,
    job_env,
    kill_worker_during,
    run_on_cluster,
    spark_submit,
    start_job,
)

CLEAN_TABLES = ("interactions", "quarantine", "items", "users")
TRAINING_PARTS = ("interactions", "user_map", "item_map", "item_features", "user_features")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="session")
def local_wh(spark, landing, tmp_path_factory) -> Path:
    """The reference: the same job entry points in local mode (local[2], this process's Spark)."""
    from jobs import build_features, clean_interactions

    wh = tmp_path_factory.mktemp("wh-local")
    # Same settings as the shared test session, so that these runs leave it as they found it.
    common = ["--ds", DS, "--env", "local", "--master", "local[2]", "--warehouse", str(wh),
              "--set", 'spark.conf.spark.sql.shuffle.partitions="2"']
    assert clean_interactions.main([*common, "--landing", str(landing)]) == 0
    assert build_features.main(common) == 0
    return wh


@pytest.fixture(scope="session")
def submitted_clean(cluster, landing) -> tuple[Path, str]:
    """spark-submit --master <cluster> jobs/clean_interactions.py: (warehouse, application id)."""
    cluster.ensure_workers()
    wh = cluster.home / "wh-submit"
    _, app = run_on_cluster(cluster, "submit-clean", [
        spark_submit(), "--master", cluster.url, "jobs/clean_interactions.py", "--ds", DS,
        "--landing", str(landing), "--warehouse", str(wh)], job_env(cluster))
    return wh, app


# --- comparisons ------------------------------------------------------------------------------

def _assert_same_clean(spark, reference: Path, other: Path) -> None:
    for table in CLEAN_TABLES:
        assert_same_parquet(spark, reference / table / f"ds={DS}", other / table / f"ds={DS}")
    # The books: raw = clean + duplicates + quarantined, per reason, per file, side inputs. The
    # summary holds no run-specific timestamps or paths (ts_min/ts_max are the data's), so all of
    # it must be equal.
    books = [json.loads((wh / "interactions" / f"ds={DS}" / "_dq_summary.json").read_text())
             for wh in (reference, other)]
    assert books[0] == books[1]
    assert books[0]["raw"] == books[0]["clean"] + books[0]["duplicates"] + books[0]["quarantined"]
    assert not list((other / "_staging").glob("*/*")), "staging left behind"


# --- tests ------------------------------------------------------------------------------------

def test_standalone_env_points_every_spark_step_at_the_cluster(monkeypatch, tmp_path):
    """`--env standalone` and `RECSYS_ENV=standalone` give both Spark jobs the cluster's master
    and executor settings; paths are the local ones (one machine, one file system)."""
    from jobs import build_features, clean_interactions
    from jobs._common import setup

    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    local = load_config(env="local")
    for job in (clean_interactions, build_features):
        monkeypatch.delenv("RECSYS_ENV", raising=False)
        by_flag = setup(job.build_parser().parse_args(["--ds", DS, "--env", "standalone"]))
        monkeypatch.setenv("RECSYS_ENV", "standalone")
        by_env = setup(job.build_parser().parse_args(["--ds", DS]))
        for cfg in (by_flag, by_env):
            assert cfg.spark.master == "spark://127.0.0.1:7077"
            assert cfg.spark.conf["spark.executor.memory"] == "1g"
            assert cfg.spark.conf["spark.executor.cores"] == "1"
            assert cfg.spark.conf["spark.cores.max"] == "2"
            assert cfg.spark.conf["spark.submit.deployMode"] == "client"
            assert cfg.paths == local.paths


@pytest.mark.parametrize("conn", [
    "spark://127.0.0.1:7077?deploy-mode=client",
    '{"conn_type": "spark", "host": "spark://127.0.0.1", "port": 7077, "extra": {"deploy-mode": "client"}}',
    '{"conn_type": "spark", "host": "spark://127.0.0.1:7077", "extra": {"deploy-mode": "client"}}',
], ids=["uri", "json-host-port", "json-url"])
def test_airflow_spark_default_connection_submits_to_the_cluster(monkeypatch, conn):
    """The `spark_default` forms docs/cluster.md gives, as the pinned Spark provider reads them."""
    from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", conn)
    cmd = SparkSubmitHook(conn_id="spark_default")._build_spark_submit_command("jobs/clean_interactions.py")
    assert cmd[cmd.index("--master") + 1] == "spark://127.0.0.1:7077"
    assert cmd[cmd.index("--deploy-mode") + 1] == "client"


def test_clean_via_spark_submit_equals_local(cluster, spark, local_wh, submitted_clean):
    # Fixture order: the cluster starts in the background while the local reference runs.
    wh, app = submitted_clean
    tasks = cluster.tasks_by_worker(app)
    assert sum(tasks.values()) > 0, f"no task ran on the cluster's executors: {tasks}"
    _assert_same_clean(spark, local_wh, wh)


def test_cluster_runs_on_loopback_with_two_alive_workers(cluster):
    cluster.ensure_workers()
    state = cluster.state()
    alive = [w for w in state["workers"] if w["state"] == "ALIVE"]
    assert len(alive) == 2 and state["status"] == "ALIVE"
    assert all(w["host"] == "127.0.0.1" and w["cores"] == 1 and w["memory"] == 2048 for w in alive)
    status = cluster.script("status")
    assert status.returncode == 0 and status.stdout.count(": ALIVE") == 2, status.stdout
    # Its files are under $RECSYS_HOME/cluster, none in the venv's pyspark folder.
    for sub in ("logs/master.out", "logs/worker-1.out", "run/master.pid", "work/worker-2", "conf"):
        assert (cluster.files / sub).exists(), sub
    pids = {int(p.read_text()) for p in (cluster.files / "run").glob("*.pid")}
    # Executors inherit the workers' environment: the venv's python and this checkout.
    for i in (1, 2):
        environ = dict(kv.split("=", 1) for kv in Path(f"/proc/{cluster.worker_pid(i)}/environ")
                       .read_text(errors="replace").split("\0") if "=" in kv)
        assert environ["PYSPARK_PYTHON"] == sys.executable
        assert environ["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)
        assert environ["SPARK_LOCAL_IP"] == "127.0.0.1"
    if shutil.which("ss") is None:
        pytest.skip("no `ss` to list listening sockets")
    listening = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    ours = [line for line in listening.splitlines()
            if any(f"pid={pid}," in line for pid in pids)]
    # Master RPC + UI, each worker's RPC + UI; every one on loopback, no REST server (6066).
    assert len(ours) >= 6, listening
    for line in ours:
        local_addr = line.split()[3]
        assert re.match(r"^(\[::ffff:)?127\.0\.0\.1\]?:\d+$", local_addr), line
        assert not local_addr.endswith(":6066"), line


def test_build_features_via_spark_submit_equals_local(cluster, spark, local_wh, submitted_clean):
    wh, _ = submitted_clean
    cluster.ensure_workers()
    _, app = run_on_cluster(cluster, "submit-features", [
        spark_submit(), "--master", cluster.url, "jobs/build_features.py", "--ds", DS,
        "--warehouse", str(wh)], job_env(cluster))
    assert sum(cluster.tasks_by_worker(app).values()) > 0
    ref, got = (w / "training_set" / f"ds={DS}" for w in (local_wh, wh))
    for part in TRAINING_PARTS:
        assert_same_parquet(spark, ref / part, got / part)
    for doc in ("_dq_summary.json", "_lineage.json"):
        assert json.loads((ref / doc).read_text()) == json.loads((got / doc).read_text())


def test_worker_killed_mid_clean_the_step_finishes_with_the_same_output(cluster, spark, local_wh, landing):
    """`RECSYS_ENV=standalone python -m jobs.clean_interactions`; worker 1's JVM gets SIGKILL as
    soon as its executor runs a task, before the clean step writes anything. Its executor goes
    with it; the driver re-runs the lost tasks on the other executor and the step finishes with
    the undisturbed output.

    Not tested here: a worker lost *after* the first pass, during the writes. The clean step
    persists its de-duplicated rows (lineage kept), so lost blocks are recomputed; with the
    `localCheckpoint` it used before, that loss failed the step (CHECKPOINT_RDD_BLOCK_ID_NOT_FOUND).
    """
    cluster.ensure_workers()
    wh = cluster.home / "wh-killed"
    env = job_env(cluster, RECSYS_ENV="standalone")
    cmd = [sys.executable, "-m", "jobs.clean_interactions", "--ds", DS, "--landing", str(landing),
           "--warehouse", str(wh)]
    if cluster.url != "spark://127.0.0.1:7077":  # the standard port was taken on this machine
        cmd += ["--set", f"spark.master={cluster.url}"]
    before = cluster.app_ids()
    t0 = time.monotonic()
    proc, log, fh = start_job(cluster, "killed-clean", cmd, env)
    writing = wh / "_staging" / "quarantine"
    try:
        app, killed_at = kill_worker_during(cluster, proc, before, lambda app: not writing.exists())
        assert not writing.exists(), "the kill landed after the writes began"
        text = finish_job(proc, log, fh)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        fh.close()
    print(f"\nworker 1 killed {killed_at:.1f} s in; job done after {time.monotonic() - t0:.1f} s; "
          f"load {os.getloadavg()}", file=sys.stderr)
    # The driver saw the executor go and re-ran its tasks elsewhere.
    assert re.search(r"Lost executor \d+ on 127\.0\.0\.1", text), text[-3000:]
    assert cluster.tasks_by_worker(app)[2] > 0
    dead = [w for w in cluster.state()["workers"] if w["state"] != "ALIVE"]
    assert dead, "the master still counts the killed worker as alive"
    _assert_same_clean(spark, local_wh, wh)
