"""The Spark standalone cluster of scripts/cluster.sh, for the end-to-end tests (tests/e2e/conftest.py
starts one per test session), and how those tests run jobs on it: drivers' environment, logs,
waiting, killing a worker in the middle of a job."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chispa import assert_df_equality

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "cluster.sh"
# The day every cluster test generates (one small day: tests/e2e/conftest.py `landing`).
DS = "2024-03-01"
JOB_TIMEOUT_S = 300


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(wanted: list[tuple[int, int]]) -> list[int]:
    """For each (preferred first port, how many in a row): that run if it is free, else another
    free run; runs never overlap."""
    taken: set[int] = set()
    out = []
    for preferred, n in wanted:
        for base in [preferred, *range(20000 + os.getpid() % 5000, 65000, 7)]:
            run = set(range(base, base + n))
            if not run & taken and all(port_free(p) for p in run):
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



def job_env(cluster: Cluster, **extra: str) -> dict[str, str]:
    """A driver's environment: the venv's python everywhere, this checkout first on the path."""
    env = {**cluster.env, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "SPARK_LOCAL_IP": "127.0.0.1", "JAVA_TOOL_OPTIONS": QUICK_JVM,
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    for key in ("RECSYS_ENV", "PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET", "SPARK_MASTER_PORT",
                "SPARK_MASTER_WEBUI_PORT", "SPARK_WORKER_WEBUI_PORT", "CLUSTER_JAVA_OPTS"):
        env.pop(key, None)
    env.update(extra)
    return env


def spark_submit() -> str:
    import pyspark

    return str(Path(pyspark.__file__).parent / "bin" / "spark-submit")


def start_job(cluster: Cluster, name: str, cmd: list[str], env: dict[str, str]):
    log = cluster.home / "logs" / f"{name}.log"
    log.parent.mkdir(exist_ok=True)
    cluster.logs.append(log)
    fh = log.open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                            start_new_session=True)
    return proc, log, fh


def finish_job(proc, log: Path, fh, timeout: float = JOB_TIMEOUT_S) -> str:
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


def run_on_cluster(cluster: Cluster, name: str, cmd: list[str], env: dict[str, str]) -> tuple[str, str]:
    """Run a job's command line; return (its output, the id of the application it ran)."""
    before = cluster.app_ids()
    t0 = time.monotonic()
    text = finish_job(*start_job(cluster, name, cmd, env))
    apps = cluster.app_ids() - before
    assert len(apps) == 1, f"{name}: expected one new application at the master, got {apps}"
    print(f"\n{name}: {time.monotonic() - t0:.1f} s; load {os.getloadavg()}", file=sys.stderr)
    return text, apps.pop()




def kill_worker_during(cluster: Cluster, proc, before: set[str], when: Callable[[str], bool],
                       worker: int = 1, timeout: float = JOB_TIMEOUT_S) -> tuple[str, float]:
    """SIGKILL ``worker``'s JVM (its executor goes with it) once the job ``proc`` started has its
    application at the master (one not in ``before``), ``when(app_id)`` holds and that worker's
    executor is running a task. Returns (application id, seconds after the call it was killed);
    fails when the job ends first."""
    t0 = time.monotonic()
    victim = cluster.worker_pid(worker)
    app = None
    while proc.poll() is None and time.monotonic() - t0 < timeout:
        if app is None:
            new = cluster.app_ids() - before
            app = new.pop() if new else None
        elif when(app) and any(
                "Running task" in f.read_text(errors="replace")
                for f in (cluster.files / "work" / f"worker-{worker}" / app).glob("*/stderr")):
            os.kill(victim, signal.SIGKILL)
            return app, time.monotonic() - t0
        time.sleep(0.1)
    raise AssertionError(f"the job ended (rc={proc.poll()}) before worker {worker} ran a task of it")


def assert_same_parquet(spark, left: Path, right: Path) -> None:
    assert left.is_dir() and right.is_dir(), (left, right)
    a, b = spark.read.parquet(str(left)), spark.read.parquet(str(right))
    assert a.count() > 0, f"{left}: empty (the generated day should fill every table)"
    assert_df_equality(a, b, ignore_row_order=True)
