"""The Spark steps, unchanged, on a real Spark standalone cluster (scripts/cluster.sh).

One cluster (a master and 2 workers of 1 core on 127.0.0.1) serves the whole file: it is started
once and always stopped. A small generated day is cleaned and turned into a training set in
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
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pytest
from chispa import assert_df_equality

from recsys.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "cluster.sh"
DS = "2024-03-01"
CLEAN_TABLES = ("interactions", "quarantine", "items", "users")
TRAINING_PARTS = ("interactions", "user_map", "item_map", "item_features", "user_features")
JOB_TIMEOUT_S = 300

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


# --- the cluster ------------------------------------------------------------------------------

def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports(wanted: list[tuple[int, int]]) -> list[int]:
    """For each (preferred first port, how many in a row): that run if it is free, else another
    free run; runs never overlap."""
    taken: set[int] = set()
    out = []
    for preferred, n in wanted:
        for base in [preferred, *range(20000 + os.getpid() % 5000, 65000, 7)]:
            run = set(range(base, base + n))
            if not run & taken and all(_port_free(p) for p in run):
                taken |= run
                out.append(base)
                break
        else:
            raise RuntimeError("no free ports")
    return out


@dataclass
class Cluster:
    home: Path
    env: dict[str, str]
    url: str
    ui: str
    workers: int = 2
    startup_s: float | None = None
    logs: list[Path] = field(default_factory=list)
    _starting: tuple | None = None

    def ready(self) -> "Cluster":
        """Wait for the start begun by the fixture (it overlaps the local reference run)."""
        if self._starting is not None:
            proc, t0 = self._starting
            self._starting = None
            try:
                out, err = proc.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            self.startup_s = time.monotonic() - t0
            assert proc.returncode == 0, (
                f"cluster did not start:\n{out}\n{err}\n{self.diagnostics()}")
            assert out.strip().splitlines()[-1] == self.url
            print(f"\ncluster up in {self.startup_s:.1f} s ({self.url}); load {os.getloadavg()}",
                  file=sys.stderr)
        return self

    @property
    def files(self) -> Path:
        return self.home / "cluster"

    def script(self, command: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPT), command], env=self.env, cwd=ROOT, text=True,
                              capture_output=True, timeout=timeout)

    def state(self) -> dict:
        self.ready()
        with urllib.request.urlopen(f"{self.ui}/json/", timeout=10) as resp:
            return json.load(resp)

    def worker_pid(self, i: int) -> int:
        return int((self.files / "run" / f"worker-{i}.pid").read_text())

    def ensure_workers(self) -> None:
        """Every worker ALIVE (restarts one a test killed); quick when they all are."""
        self.ready()
        out = self.script("start")
        assert out.returncode == 0, f"cluster.sh start failed:\n{out.stdout}\n{out.stderr}"

    def app_ids(self) -> set[str]:
        state = self.state()
        return {a["id"] for a in state["activeapps"] + state["completedapps"]}

    def tasks_by_worker(self, app_id: str) -> dict[int, int]:
        """Tasks each worker's executors finished for ``app_id`` (from the executors' logs)."""
        out = {}
        for i in range(1, self.workers + 1):
            logs = (self.files / "work" / f"worker-{i}" / app_id).glob("*/stderr")
            out[i] = sum(log.read_text(errors="replace").count("Finished task") for log in logs)
        return out

    def diagnostics(self) -> str:
        parts = []
        for log in sorted((self.files / "logs").glob("*.out")):
            parts.append(f"--- {log.name} (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(parts)


# Short jobs on a 2-core machine: the JVMs (daemons, executors, drivers) compile with C1 only,
# which halves their CPU time here. Results do not depend on it.
QUICK_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


@pytest.fixture(scope="session")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cluster-home")


@pytest.fixture(scope="session")
def cluster(home, request) -> Cluster:
    """A master and 2 workers from scripts/cluster.sh, on the standalone config's master port
    when it is free; stopped at the end of the session whatever happens. The fixture only begins
    the start: ``cluster.ready()`` waits for it."""
    port = urlparse(load_config(env="standalone").spark.master).port
    master_port, ui_port, worker_ui = _ports([(port, 1), (8080, 1), (8081, 2)])
    env = {**os.environ, "RECSYS_HOME": str(home), "PYTHON": sys.executable,
           "SPARK_MASTER_PORT": str(master_port), "SPARK_MASTER_WEBUI_PORT": str(ui_port),
           "SPARK_WORKER_WEBUI_PORT": str(worker_ui), "CLUSTER_START_TIMEOUT": "240",
           "CLUSTER_JAVA_OPTS": QUICK_JVM}
    env.pop("RECSYS_ENV", None)
    cl = Cluster(home, env, f"spark://127.0.0.1:{master_port}", f"http://127.0.0.1:{ui_port}")
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


# --- data and runs ----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def landing(home) -> Path:
    """One small generated day (three files: JSON Lines, CSV, Parquet; catalog and profiles)."""
    root = home / "landing"
    recsys = Path(sys.executable).parent / "recsys"
    cmd = [str(recsys)] if recsys.exists() else [sys.executable, "-m", "recsys.cli"]
    subprocess.run([*cmd, "generate", "--landing", str(root), "--start", DS, "--days", "1",
                    "--events-per-day", "5000", "--seed", "7"],
                   check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                   capture_output=True, timeout=120)
    return root


def _job_env(cluster: Cluster, **extra: str) -> dict[str, str]:
    """A driver's environment: the venv's python everywhere, this checkout first on the path."""
    env = {**cluster.env, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "SPARK_LOCAL_IP": "127.0.0.1", "JAVA_TOOL_OPTIONS": QUICK_JVM,
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    for key in ("RECSYS_ENV", "PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET", "SPARK_MASTER_PORT",
                "SPARK_MASTER_WEBUI_PORT", "SPARK_WORKER_WEBUI_PORT", "CLUSTER_JAVA_OPTS"):
        env.pop(key, None)
    env.update(extra)
    return env


def _spark_submit() -> str:
    import pyspark

    return str(Path(pyspark.__file__).parent / "bin" / "spark-submit")


def _start(cluster: Cluster, name: str, cmd: list[str], env: dict[str, str]):
    log = cluster.home / "logs" / f"{name}.log"
    log.parent.mkdir(exist_ok=True)
    cluster.logs.append(log)
    fh = log.open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                            start_new_session=True)
    return proc, log, fh


def _finish(proc, log: Path, fh, timeout: float = JOB_TIMEOUT_S) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        fh.close()
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, f"{' '.join(proc.args)} exited {proc.returncode}:\n{text[-4000:]}"
    return text


def _run_on_cluster(cluster: Cluster, name: str, cmd: list[str], env: dict[str, str]) -> tuple[str, str]:
    """Run a job's command line; return (its output, the id of the application it ran)."""
    before = cluster.app_ids()
    t0 = time.monotonic()
    text = _finish(*_start(cluster, name, cmd, env))
    apps = cluster.app_ids() - before
    assert len(apps) == 1, f"{name}: expected one new application at the master, got {apps}"
    print(f"\n{name}: {time.monotonic() - t0:.1f} s; load {os.getloadavg()}", file=sys.stderr)
    return text, apps.pop()


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
    _, app = _run_on_cluster(cluster, "submit-clean", [
        _spark_submit(), "--master", cluster.url, "jobs/clean_interactions.py", "--ds", DS,
        "--landing", str(landing), "--warehouse", str(wh)], _job_env(cluster))
    return wh, app


# --- comparisons ------------------------------------------------------------------------------

def _assert_same_parquet(spark, left: Path, right: Path) -> None:
    assert left.is_dir() and right.is_dir(), (left, right)
    a, b = spark.read.parquet(str(left)), spark.read.parquet(str(right))
    assert a.count() > 0, f"{left}: empty (the generated day should fill every table)"
    assert_df_equality(a, b, ignore_row_order=True)


def _assert_same_clean(spark, reference: Path, other: Path) -> None:
    for table in CLEAN_TABLES:
        _assert_same_parquet(spark, reference / table / f"ds={DS}", other / table / f"ds={DS}")
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
    _, app = _run_on_cluster(cluster, "submit-features", [
        _spark_submit(), "--master", cluster.url, "jobs/build_features.py", "--ds", DS,
        "--warehouse", str(wh)], _job_env(cluster))
    assert sum(cluster.tasks_by_worker(app).values()) > 0
    ref, got = (w / "training_set" / f"ds={DS}" for w in (local_wh, wh))
    for part in TRAINING_PARTS:
        _assert_same_parquet(spark, ref / part, got / part)
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
    env = _job_env(cluster, RECSYS_ENV="standalone")
    cmd = [sys.executable, "-m", "jobs.clean_interactions", "--ds", DS, "--landing", str(landing),
           "--warehouse", str(wh)]
    if cluster.url != "spark://127.0.0.1:7077":  # the standard port was taken on this machine
        cmd += ["--set", f"spark.master={cluster.url}"]
    before = cluster.app_ids()
    victim_pid = cluster.worker_pid(1)
    t0 = time.monotonic()
    proc, log, fh = _start(cluster, "killed-clean", cmd, env)
    writing = wh / "_staging" / "quarantine"
    app, killed_at = None, None
    try:
        while proc.poll() is None and time.monotonic() - t0 < JOB_TIMEOUT_S:
            if app is None:
                new = cluster.app_ids() - before
                app = new.pop() if new else None
            elif not writing.exists() and any(
                    "Running task" in f.read_text(errors="replace")
                    for f in (cluster.files / "work" / "worker-1" / app).glob("*/stderr")):
                os.kill(victim_pid, signal.SIGKILL)
                killed_at = time.monotonic() - t0
                break
            time.sleep(0.1)
        assert killed_at is not None, (
            f"the job ended (rc={proc.poll()}) before worker 1 ran a task\n{log.read_text()[-3000:]}")
        assert not writing.exists(), "the kill landed after the writes began"
        text = _finish(proc, log, fh)
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
