"""Session fixtures of the end-to-end tests on a Spark standalone cluster (tests/e2e/test_cluster*.py):
one cluster (scripts/cluster.sh: a master and 2 workers of 1 core on 127.0.0.1) for the whole
test session, started once and always stopped, and one small generated day of raw logs."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from recsys.config import load_config
from tests.e2e._cluster import DS, QUICK_JVM, ROOT, SCRIPT, Cluster, free_ports


@pytest.fixture(scope="session")
def cluster_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cluster-home")


@pytest.fixture(scope="session")
def cluster(cluster_home, request) -> Cluster:
    """A master and 2 workers from scripts/cluster.sh, on the standalone config's master port
    when it is free; stopped at the end of the session whatever happens. The fixture only begins
    the start: ``cluster.ready()`` waits for it."""
    port = urlparse(load_config(env="standalone").spark.master).port
    master_port, ui_port, worker_ui = free_ports([(port, 1), (8080, 1), (8081, 2)])
    env = {**os.environ, "RECSYS_HOME": str(cluster_home), "PYTHON": sys.executable,
           "SPARK_MASTER_PORT": str(master_port), "SPARK_MASTER_WEBUI_PORT": str(ui_port),
           "SPARK_WORKER_WEBUI_PORT": str(worker_ui), "CLUSTER_START_TIMEOUT": "240",
           "CLUSTER_JAVA_OPTS": QUICK_JVM}
    env.pop("RECSYS_ENV", None)
    cl = Cluster(cluster_home, env, f"spark://127.0.0.1:{master_port}", f"http://127.0.0.1:{ui_port}")
    def stop() -> None:
        if cl._starting is not None:  # never waited for: let the start finish, then stop all
            try:
                cl._starting[0].communicate(timeout=300)
            except subprocess.TimeoutExpired:
                cl._starting[0].kill()
        cl.script("stop", timeout=120)

    # Registered before starting: a start that fails half-way is cleaned up too.
    request.addfinalizer(stop)
    proc = subprocess.Popen(["bash", str(SCRIPT), "start"], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cl._starting = (proc, time.monotonic())
    return cl


@pytest.fixture(scope="session")
def landing(cluster_home) -> Path:
    """One small generated day (three files: JSON Lines, CSV, Parquet; catalog and profiles)."""
    root = cluster_home / "landing"
    recsys = Path(sys.executable).parent / "recsys"
    cmd = [str(recsys)] if recsys.exists() else [sys.executable, "-m", "recsys.cli"]
    subprocess.run([*cmd, "generate", "--landing", str(root), "--start", DS, "--days", "1",
                    "--events-per-day", "5000", "--seed", "7"],
                   check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                   capture_output=True, timeout=120)
    return root
