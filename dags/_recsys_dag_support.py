"""Small helpers for the recsys DAGs: the run's ``ds``, the raw-log check, failure records.

Imports stdlib only at module level (DAG files import this at parse time); ``recsys`` is
imported inside the functions, which run in task and callback processes. Kept out of DAG
discovery by ``.airflowignore``; importable because the DAGs folder is on ``sys.path`` in every
Airflow process (a DAG bundle's path, plus ``PYTHONPATH`` from ``recsys.localenv``).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# The model families a run may train (the form's pick list). A family the registry does not
# know yet fails in jobs.train with a clear message, not at parse time.
FAMILIES = ("mf_bpr", "mf_explicit", "ials", "neumf", "multvae", "two_tower",
            "popularity", "itemknn", "ease", "ease_hybrid", "ease_ensemble", "als_spark")
# YYYY-MM-DD with a real month (01-12) and day (01-31); the form refuses anything else.
DS_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"
# The published top-N table, as an Airflow asset (name and URI only: nothing is read at parse time).
RECOMMENDATIONS_ASSET = {"name": "recsys_recommendations",
                         "uri": "file:///recsys/warehouse/recommendations", "group": "recsys"}


def run_ds(params: dict[str, Any], dag_run: Any) -> str:
    """The partition a run works on: ``params.ds`` if given, else the run's logical date.

    A run triggered with no logical date (allowed in Airflow 3) falls back to ``run_after``.
    Used as the ``run_ds`` template macro, so every task of a run resolves the same value.
    """
    ds = (params or {}).get("ds")
    if ds:
        try:
            if not re.match(DS_PATTERN, str(ds)):
                raise ValueError
            dt.date.fromisoformat(str(ds))  # 2026-02-31 passes the pattern, not the calendar
        except ValueError:
            raise ValueError(f"params.ds must be a date YYYY-MM-DD, got {ds!r}") from None
        return str(ds)
    when = getattr(dag_run, "logical_date", None) or dag_run.run_after
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%d")


def _safe_ds(context: dict[str, Any]) -> str | None:
    try:
        return run_ds(context.get("params") or {}, context["dag_run"])
    except Exception:  # noqa: BLE001 - a record without ds beats no record
        return None


def _recsys_home() -> Path:
    from recsys.config import recsys_home  # task-time import: keeps DAG parsing light

    return recsys_home()


def raw_logs_present(ds: str) -> bool:
    """True once ``<landing>/interactions/ds=<ds>/`` holds at least one visible data file."""
    from recsys.config import load_config  # task-time import: keeps DAG parsing light
    from recsys.io import partition_path
    from recsys.schema import INTERACTIONS

    folder = partition_path(load_config().paths.landing, INTERACTIONS, ds)
    files = [p for p in folder.glob("*") if p.is_file() and not p.name.startswith((".", "_"))]
    log.info("raw logs for ds=%s in %s: %d file(s)", ds, folder, len(files))
    return bool(files)


def _write_record(kind: str, name: str, record: dict[str, Any]) -> Path:
    folder = _recsys_home() / "airflow" / kind
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (re.sub(r"[^A-Za-z0-9_.=-]+", "_", name) + ".json")
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path


def record_failure(context: dict[str, Any]) -> None:
    """``on_failure_callback``: log which task failed and why; keep a JSON record of it.

    Writes ``$RECSYS_HOME/airflow/failures/<dag>__<run>__<task>[.<map index>]__try<N>.json``.
    Never raises: a broken callback must not hide the task's own error.
    """
    try:
        ti = context["ti"]
        exc = context.get("exception")
        map_index = getattr(ti, "map_index", -1)
        task = ti.task_id + (f"[{map_index}]" if map_index is not None and map_index >= 0 else "")
        record = {
            "dag_id": ti.dag_id,
            "run_id": ti.run_id,
            "task_id": ti.task_id,
            "map_index": map_index,
            "try_number": getattr(ti, "try_number", None),
            "ds": _safe_ds(context),
            "error_type": type(exc).__name__ if exc is not None else None,
            "error": str(exc) if exc is not None else None,
            "recorded_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        }
        label = task.replace("[", ".").rstrip("]")
        name = f"{ti.dag_id}__{ti.run_id}__{label}__try{record['try_number']}"
        path = _write_record("failures", name, record)
        log.error("task %s of %s (run %s) failed: %s; record: %s",
                  task, ti.dag_id, ti.run_id, record["error"], path)
    except Exception:  # noqa: BLE001 - see docstring
        log.exception("could not record the task failure")


def deadline_missed(context: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Deadline-alert callback: a run is still unfinished at its deadline.

    Airflow passes a small context (``dag_run`` as a dict, ``deadline.deadline_time``); this logs
    a warning and writes ``$RECSYS_HOME/airflow/deadlines/<dag>__<run>.json``. Swap in a notifier
    (Slack, e-mail) in production.
    """
    context = context or {}
    run = context.get("dag_run") or {}
    record = {
        "dag_id": run.get("dag_id"),
        "run_id": run.get("dag_run_id") or run.get("run_id"),
        "state": run.get("state"),
        "deadline_time": (context.get("deadline") or {}).get("deadline_time"),
        "recorded_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        **kwargs,
    }
    path = _write_record("deadlines", f"{record['dag_id']}__{record['run_id']}", record)
    log.warning("run %s of %s missed its deadline %s; record: %s",
                record["run_id"], record["dag_id"], record["deadline_time"], path)
