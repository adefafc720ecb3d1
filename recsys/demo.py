"""``make demo``: the nightly pipeline end to end on the embedded default.

Generates a small seeded synthetic interaction log (a few days, bad rows included) into
``$RECSYS_HOME/landing``, runs the real Airflow DAG ``recsys_nightly`` for every generated day,
oldest first, with ``airflow dags test`` against the SQLite metadata DB under
``$RECSYS_HOME/airflow``, then prints
where the published table is, what it holds, and how to open the MLflow and Airflow UIs.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from recsys.config import DEFAULT_HOME
from recsys.io import partition_path
from recsys.schema import RECOMMENDATIONS

_TASK_EVENT = re.compile(r"\[DAG TEST\] (?P<what>starting|end task) task_id=(?P<task>\S+)")
REPO = Path(__file__).resolve().parent.parent
DEFAULT_DS = "2026-11-21"


def _say(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


def run_dag(env: dict[str, str], ds: str, conf: dict) -> None:
    """Run ``recsys_nightly`` for ``ds`` in-process with ``airflow dags test``; raise on failure."""
    cmd = [str(Path(sys.executable).parent / "airflow"), "dags", "test", "recsys_nightly", ds,
           "--conf", json.dumps(conf)]
    log = Path(env["AIRFLOW_HOME"]) / f"dags-test-{ds}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started: dict[str, float] = {}
        skipped = False
        for line in proc.stdout:  # progress: one line per task start/end; the full log in the file
            out.write(line)
            m = _TASK_EVENT.search(line)
            if m and m["what"] == "starting":
                started[m["task"]] = time.perf_counter()
                skipped = False
                print(f"   {m['task']:<16} running...", flush=True)
            elif m:
                took = time.perf_counter() - started.get(m["task"], time.perf_counter())
                what = "skipped" if skipped else f"done in {took:.0f} s"
                print(f"   {m['task']:<16} {what}", flush=True)
            elif "new_state=skipped" in line:
                skipped = True
            elif "new_state=failed" in line or "Traceback" in line:
                print("   " + line.strip()[:300], flush=True)
        code = proc.wait()
    if code != 0:
        raise SystemExit(f"recsys_nightly failed for {ds} (exit {code}); full log: {log}")
    failed = [line for line in log.read_text().splitlines() if "state=failed" in line or "FAILED" in line]
    if failed:
        raise SystemExit(f"recsys_nightly reported failed tasks for {ds}; see {log}")


def summarize(warehouse: Path, ds: str, mlflow_uri: str, artifacts: str) -> None:
    import duckdb

    part = partition_path(warehouse, RECOMMENDATIONS, ds)
    if not (part / "_SUCCESS").exists():
        raise SystemExit(f"no published partition at {part}")
    con = duckdb.connect()
    files = str(part / "*.parquet")
    rows, users, version, model = con.execute(
        f"SELECT count(*), count(DISTINCT user_id), any_value(model_version), any_value(model_name) "
        f"FROM read_parquet('{files}')").fetchone()
    sources = con.execute(
        f"SELECT source, count(DISTINCT user_id) FROM read_parquet('{files}') GROUP BY source "
        f"ORDER BY 2 DESC").fetchall()
    sample = con.execute(
        f"SELECT user_id, rank, item_id, round(score, 4) AS score, source, because FROM read_parquet('{files}') "
        f"ORDER BY user_id, rank LIMIT 6").fetchdf()
    _say("Published recommendations")
    print(f"   table:     {warehouse / 'recommendations'}  (Parquet, partitioned by ds)")
    print(f"   partition: {part}")
    print(f"   rows: {rows}   users: {users}   model: {model} version {version}")
    print("   users by source: " + ", ".join(f"{s} {n}" for s, n in sources)
          + "   (model: the model's own lists; fold_in: users new since its training day;"
          " popular/content: no usable history)")
    manifest = part / "_manifest.json"
    if manifest.exists():
        print(f"   manifest:  {manifest}")
    print(sample.to_string(index=False))
    print(f"""
   Query it (DuckDB):
     .venv/bin/python -c "import duckdb; print(duckdb.sql(\\"SELECT * FROM read_parquet('{warehouse}/recommendations/*/*.parquet', hive_partitioning=true) WHERE user_id = '{sample.user_id[0]}' ORDER BY ds, rank\\"))"
   MLflow UI (runs, metrics, registered models and the champion alias):
     .venv/bin/mlflow server --backend-store-uri {mlflow_uri} --default-artifact-root {artifacts} --host 127.0.0.1 --port 5000 --workers 1
   Airflow UI (the same metadata DB; trigger runs from the form):
     make airflow        # then make airflow-stop
""")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ds", default=DEFAULT_DS, help=f"logical date to run (default {DEFAULT_DS})")
    p.add_argument("--days", type=int, default=3,
                   help="days of generated logs ending at --ds; the DAG runs for each, in order")
    p.add_argument("--models", default=None,
                   help="comma-separated families to train (default: train.models of the config)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--top-n", type=int, default=10)
    p.add_argument("--skip-training-days", type=int, default=None,
                   help="run the last K days with skip_training: scored with the champion of the day "
                        "before, so users new on those days are folded in (default: 1 when --days > 1)")
    args = p.parse_args(argv)
    skip_days = (1 if args.days > 1 else 0) if args.skip_training_days is None else args.skip_training_days
    if not 0 <= skip_days <= args.days:
        p.error("--skip-training-days must be between 0 and --days")

    os.environ.setdefault("RECSYS_HOME", str(REPO / DEFAULT_HOME))
    from recsys.config import load_config
    from recsys.data.generator import generate_landing
    from recsys.localenv import airflow_env, ensure_db

    cfg = load_config()
    home = cfg.paths.home
    t0 = time.perf_counter()
    start = (dt.date.fromisoformat(args.ds) - dt.timedelta(days=args.days - 1)).isoformat()
    _say(f"Generating {args.days} days of synthetic logs ({start} .. {args.ds}) into {cfg.paths.landing}")
    stats = generate_landing(cfg.paths.landing, start, args.days, seed=42)
    print(f"   {json.dumps(stats, default=str)[:300]}")

    _say(f"Preparing the embedded Airflow under {home / 'airflow'} (SQLite)")
    env = airflow_env(home, REPO)
    env["RECSYS_DEADLINE_MINUTES"] = "0"  # see dags/recsys_nightly.py: dags test + deadlines
    ensure_db(env)

    # Every generated day, oldest first, as a backfill would: each day's training set then looks
    # back over the days before it, and the newest published day is the last one run.
    days = [(dt.date.fromisoformat(start) + dt.timedelta(days=d)).isoformat() for d in range(args.days)]
    for n, day in enumerate(days):
        models = args.models.split(",") if args.models else list(cfg.train.models)
        conf = {"ds": day, "models": models, "top_n": args.top_n}
        if args.epochs:
            conf["epochs"] = args.epochs
        if n >= len(days) - skip_days:
            # As an operator would on a night without training: the champion serves, and users
            # whose first events came after its training day get fold-in lists, not the fallback.
            conf["skip_training"] = True
            _say(f"ds={day} runs with skip_training: scored with the current champion; users new "
                 "since its training day are folded in (source = fold_in)")
        _say(f"Running the Airflow DAG recsys_nightly for ds={day} (airflow dags test) with conf {conf}")
        run_dag(env, day, conf)
    summarize(cfg.paths.warehouse, args.ds, cfg.mlflow.tracking_uri, cfg.mlflow.artifact_location)
    print(f"   demo finished in {time.perf_counter() - t0:.0f} s; everything lives under {home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
