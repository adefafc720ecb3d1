"""The real Airflow: api-server + scheduler + dag-processor; a backfill and a re-run from the UI.

Starts the three services on free ports against a temporary RECSYS_HOME (SQLite metadata DB),
logs in through SimpleAuthManager's ``/auth/token``, unpauses the DAG, backfills three dates
through ``/api/v2/backfills``, then re-runs the middle one the way a person does: headless
Chromium (Selenium, ``tests/e2e/_browser.py``) logs in to the UI, clicks Trigger and fills the
form's ``ds``, models, top-N and epochs. It checks the three published partitions, that the
re-run changed nothing outside its own date, the deadline alert (set to one minute here, so
every run misses it), the scheduled run for a day without logs (it fails, and the failure
callback records why), and the asset-triggered consumer; in the browser, the finished run's grid
and, on an ``mlflow server`` over the test's store, what a person looks for in MLflow (the runs
list's ranking-metric column, the champion's run opening on its learning curve, its dataset
input, the gate's decision and the ``champion`` alias on the version page). Every browser step leaves a screenshot and the page source under
``<tmp_path>/browser`` (a failure names the folder). Every process is started in its own
session and killed by process group at the end.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e._browser import (
    Browser,
    MlflowServer,
    airflow_login,
    airflow_run_grid,
    check_champion_in_mlflow_ui,
    missing,
    trigger_dag_with_form,
)

# On an idle 2-core machine a run takes a few minutes (two spark-submit JVMs dominate); on a
# shared, loaded one it has taken 12. RECSYS_E2E_RUN_TIMEOUT_S raises the wait per run.
RUN_S = int(os.environ.get("RECSYS_E2E_RUN_TIMEOUT_S", 1200))
STARTUP_S = 300
pytestmark = [pytest.mark.slow, pytest.mark.airflow_server, pytest.mark.browser,
              pytest.mark.timeout(4 * RUN_S + 4 * STARTUP_S)]

REPO = Path(__file__).resolve().parents[2]
DATES = ("2024-03-01", "2024-03-02", "2024-03-03")
RERUN = DATES[1]
TOP_N = 3
# The form's default families (conf/base.yaml train.models): ease_hybrid serves the table,
# mf_bpr (the one with a learning curve) is checked in the MLflow UI.
CONF = {"models": ["ease_hybrid", "mf_bpr"], "top_n": TOP_N, "epochs": 2}
SERVICES = ("api-server", "scheduler", "dag-processor")


def _free_port_pair() -> int:
    """A port p with p and p + 1 free (the scheduler's log server takes p + 1)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


class Api:
    """A tiny client for Airflow's REST API (/api/v2) with a JWT from /auth/token."""

    def __init__(self, base: str, services: dict[str, subprocess.Popen] | None = None,
                 logs: Path | None = None):
        self.base, self.token = base, None
        self.services, self.logs = services or {}, logs

    def check_services(self) -> None:
        """Fail at once, naming its log, when an Airflow service has exited: nothing would run.

        (The scheduler has died on SQLite with ``StaleDataError`` on ``dag_run``, an Airflow race;
        waiting for runs would then take the whole timeout.)"""
        dead = {n: p.returncode for n, p in self.services.items() if p.poll() is not None}
        if dead:
            pytest.fail(f"Airflow services exited: {dead}; logs under {self.logs}")

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(self.base + path, method=method,
                                     data=None if body is None else json.dumps(body).encode())
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, {"detail": exc.read().decode(errors="replace")}

    def login(self, username: str, password: str) -> None:
        status, body = self.call("POST", "/auth/token", {"username": username, "password": password})
        assert status in (200, 201), body
        self.token = body["access_token"]


def _wait(what: str, check, timeout: float, every: float = 3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except (OSError, urllib.error.URLError):
            result = None
        if result:
            return result
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture()
def airflow(tmp_path):
    """Running Airflow services on a fresh RECSYS_HOME; yields (api, env, home)."""
    from recsys.localenv import admin_password, airflow_env, ensure_db

    home, port = tmp_path / "var", _free_port_pair()
    env = airflow_env(home, REPO, port=port)
    env.update({
        # Backfills need the cron schedule, so unpausing also queues the latest scheduled run: a
        # day with no logs, whose sensor gives up after this long (the run then fails).
        "RECSYS_SENSOR_TIMEOUT_S": "90",
        "RECSYS_NIGHTLY_SCHEDULE": "0 2 * * *",  # the embedded default has none
        # Every run here takes longer than a minute: each one misses this deadline, live.
        "RECSYS_DEADLINE_MINUTES": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    })
    ensure_db(env)
    password = admin_password(env)
    logs = home / "airflow" / "services"
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        for name in SERVICES:
            out = (logs / f"{name}.log").open("w")
            procs.append(subprocess.Popen([str(Path(sys.executable).parent / "airflow"), name],
                                          env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True))
        api = Api(f"http://127.0.0.1:{port}", dict(zip(SERVICES, procs)), logs)
        _wait("the api-server", lambda: api.call("GET", "/api/v2/monitor/health")[0] == 200,
              STARTUP_S)
        api.login("admin", password)
        yield api, env, home
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.fixture()
def browser(tmp_path):
    """Headless Chromium; screenshots and page sources go to ``tmp_path / "browser"``."""
    if why := missing():
        pytest.fail(f"the browser test needs a headless Chromium: {why}")
    with Browser(tmp_path / "browser") as b:
        yield b


def _task_report(api: Api, run_id: str) -> str:
    _, tis = api.call("GET", f"/api/v2/dags/recsys_nightly/dagRuns/{run_id}/taskInstances")
    return ", ".join(f"{t['task_id']}[{t['map_index']}]={t['state']}"
                     for t in tis.get("task_instances", []))


def _runs(api: Api, dag_id: str = "recsys_nightly") -> list[dict]:
    status, body = api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100")
    assert status == 200, body
    return body["dag_runs"]


def _wait_runs_finished(api: Api, run_ids: list[str], home: Path) -> None:
    """Wait until every run finished; fail with the task states of the first unsuccessful one."""
    def finished():
        api.check_services()
        states = {r["dag_run_id"]: r["state"] for r in _runs(api)}
        done = all(states.get(i) in ("success", "failed") for i in run_ids)
        return states if done else None

    try:
        states = _wait(f"runs {run_ids}", finished, RUN_S * len(run_ids), every=5)
    except TimeoutError as exc:
        pytest.fail(f"{exc}; tasks: " + "; ".join(_task_report(api, i) for i in run_ids))
    for run_id in run_ids:
        assert states[run_id] == "success", (
            f"{run_id}: {_task_report(api, run_id)}; logs under {home / 'airflow' / 'logs'}")


def _snapshot(warehouse: Path, skip_ds: str) -> dict[str, str]:
    """sha256 of every file in the warehouse outside the ``ds=<skip_ds>`` partitions."""
    return {str(p.relative_to(warehouse)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(warehouse.rglob("*"))
            if p.is_file() and f"ds={skip_ds}" not in p.parts}


def _published(home: Path, ds: str):
    import pandas as pd

    part = home / "warehouse" / "recommendations" / f"ds={ds}"
    assert (part / "_SUCCESS").exists(), f"{part} is not published"
    table = pd.concat(pd.read_parquet(f) for f in sorted(part.glob("*.parquet")))
    per_user = table.groupby("user_id")["rank"].apply(sorted)
    assert len(per_user) > 0
    assert all(r == list(range(1, TOP_N + 1)) for r in per_user)
    assert set(table["mlflow_run_id"]) and "ease_hybrid" in table["model_name"].iloc[0]
    return table


def test_backfill_three_dates_then_rerun_one_from_the_ui(airflow, browser, monkeypatch):
    api, env, home = airflow
    from recsys.config import load_config
    from recsys.data.generator import generate_landing
    from recsys.localenv import admin_password
    from recsys.tracking import HOLDOUT, metric_key

    # Tiny data: a day of history before the three backfilled dates.
    generate_landing(home / "landing", "2024-02-29", 4, seed=7, n_users=60, n_items=40,
                     events_per_day=800)

    _wait("recsys_nightly to be parsed",
          lambda: api.call("GET", "/api/v2/dags/recsys_nightly")[0] == 200, STARTUP_S)
    for dag_id in ("recsys_nightly", "recsys_consumer"):
        status, body = api.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        assert status == 200, body
    # Unpausing makes the scheduler create the latest scheduled run; creating the backfill while
    # it does so has crashed the scheduler on SQLite (StaleDataError on dag_run, two writers of
    # one table). Let it finish first.
    _wait("the scheduled run that unpausing queues",
          lambda: api.check_services() or any(r["run_type"] == "scheduled" for r in _runs(api)),
          STARTUP_S)

    # The backfill: one run per cron tick in the range, one at a time (the gate sees days in order).
    backfill = {"dag_id": "recsys_nightly", "from_date": f"{DATES[0]}T00:00:00Z",
                "to_date": f"{DATES[-1]}T23:59:59Z", "dag_run_conf": CONF, "max_active_runs": 1}
    status, plan = api.call("POST", "/api/v2/backfills/dry_run", backfill)
    assert status == 200, plan
    assert [b["logical_date"][:10] for b in plan["backfills"]] == list(DATES)
    # On SQLite the api-server answers 503 while the scheduler holds the database lock: retry.
    created = _wait("the backfill to be created",
                    lambda: (r := api.call("POST", "/api/v2/backfills", backfill))[0] != 503 and r,
                    STARTUP_S, every=2)
    assert created[0] == 200, created[1]

    def backfill_runs():
        runs = [r for r in _runs(api) if r["run_type"] == "backfill"]
        return runs if len(runs) == len(DATES) else None

    runs = _wait("the backfill's runs", lambda: api.check_services() or backfill_runs(), STARTUP_S)
    _wait_runs_finished(api, [r["dag_run_id"] for r in runs], home)
    tables = {ds: _published(home, ds) for ds in DATES}
    parts = sorted(p.name for p in (home / "warehouse" / "recommendations").glob("ds=*"))
    assert parts == [f"ds={ds}" for ds in DATES]

    # The deadline alert fired for the runs that outlived RECSYS_DEADLINE_MINUTES (the scheduler
    # hands the callback to the executor, so it may land a little after the run ends).
    def deadline_records():
        found = {json.loads(p.read_text())["run_id"]
                 for p in (home / "airflow" / "deadlines").glob("*.json")}
        return found & {r["dag_run_id"] for r in runs} or None

    assert _wait("deadline records", deadline_records, STARTUP_S, every=5)

    # Unpausing queued the latest scheduled run: its day has no logs, so the sensor times out,
    # the run fails, the failure callback records why, and the published table is left alone.
    scheduled = [r["dag_run_id"] for r in _runs(api) if r["run_type"] == "scheduled"]
    assert scheduled, "unpausing a cron DAG should have queued its latest interval"
    _wait("the scheduled run to fail",
          lambda: {r["dag_run_id"]: r["state"] for r in _runs(api)}.get(scheduled[0]) == "failed",
          RUN_S, every=5)
    records = [json.loads(p.read_text()) for p in (home / "airflow" / "failures").glob("*.json")]
    assert any(r["run_id"] == scheduled[0] and r["task_id"] == "wait_raw_logs" for r in records)

    # Re-run the middle date from outside, with a conf, the way a person does: headless Chromium
    # logs in to the UI, opens recsys_nightly, clicks Trigger, fills the form and submits it.
    before = _snapshot(home / "warehouse", RERUN)
    airflow_login(browser, api.base, "admin", admin_password(env))
    run_id = trigger_dag_with_form(browser, api.base, "recsys_nightly", {"ds": RERUN, **CONF})
    browser.driver.get("about:blank")  # nothing polls the api-server while the run works

    # The MLflow UI checked below starts now, on the test's store (the backfill created it), so
    # that its start overlaps the run.
    monkeypatch.setenv("RECSYS_HOME", env["RECSYS_HOME"])
    cfg = load_config()
    with MlflowServer(cfg.mlflow.tracking_uri, cfg.mlflow.artifact_location,
                      browser.evidence / "mlflow-server.log") as mlflow_ui:
        # The run the form created, found over REST: triggered from the UI, with the form's values.
        ui_runs = [r for r in _runs(api) if r["triggered_by"] == "ui"]
        assert [r["dag_run_id"] for r in ui_runs] == [run_id], (
            f"{ui_runs}; screenshots: {browser.evidence}")
        run = ui_runs[0]
        assert run["run_type"] == "manual" and run["triggering_user_name"] == "admin", run
        assert {k: run["conf"].get(k) for k in ("ds", *CONF)} == {"ds": RERUN, **CONF}, run["conf"]
        _wait_runs_finished(api, [run_id], home)
        rerun = _published(home, RERUN)
        assert len(rerun) == len(tables[RERUN])
        # Nothing outside the re-run date changed: not the other partitions, not any other
        # step's output.
        assert _snapshot(home / "warehouse", RERUN) == before
        published = home / "warehouse" / "recommendations"
        assert sorted(p.name for p in published.glob("ds=*")) == parts

        # What a person checks next, in the browser (recsys_consumer runs meanwhile): the finished
        # run's grid; in the MLflow UI, the runs list with the gate metric's column, the champion
        # version's training run opening on its learning curve (loss and validation NDCG) with
        # its training set under "Datasets", the version page with the gate's decision and the
        # champion alias.
        airflow_run_grid(browser, api.base, "recsys_nightly", run_id)
        check_champion_in_mlflow_ui(browser, mlflow_ui.wait_ready(),
                                    cfg.mlflow.registered_name("mf_bpr"),
                                    metric=metric_key(cfg.evaluate.metric, HOLDOUT))

    # Publishing updated the asset, which schedules recsys_consumer: it exports the newest partition.
    def consumer_done():
        runs = _runs(api, "recsys_consumer")
        states = [r["state"] for r in runs]
        return states if states and all(s in ("success", "failed") for s in states) else None

    states = _wait("recsys_consumer", consumer_done, STARTUP_S, every=5)
    assert "success" in states and "failed" not in states
    csv = (home / "exports" / "recommendations_latest.csv").read_text().splitlines()
    assert len(csv) == 1 + len(tables[DATES[-1]])
