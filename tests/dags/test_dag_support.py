"""The DAG helpers: the run's ds, the raw-log check, failure/deadline records, the exports."""
from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import pytest
from _recsys_dag_support import (
    deadline_missed,
    raw_logs_present,
    record_failure,
    run_ds,
)

from recsys.steps.export import refresh_exports

UTC = dt.timezone.utc


def test_run_ds_prefers_the_form_then_logical_date_then_run_after():
    run = SimpleNamespace(logical_date=dt.datetime(2024, 5, 6, 2, tzinfo=UTC),
                          run_after=dt.datetime(2024, 5, 7, 2, tzinfo=UTC))
    assert run_ds({"ds": "2024-01-02"}, run) == "2024-01-02"
    assert run_ds({"ds": None}, run) == "2024-05-06"
    manual = SimpleNamespace(logical_date=None, run_after=dt.datetime(2024, 5, 7, 23, 30, tzinfo=UTC))
    assert run_ds({}, manual) == "2024-05-07"


def test_run_ds_uses_the_utc_date():
    cet = dt.timezone(dt.timedelta(hours=1))
    run = SimpleNamespace(logical_date=dt.datetime(2024, 5, 7, 0, 30, tzinfo=cet), run_after=None)
    assert run_ds({}, run) == "2024-05-06"


def test_run_ds_rejects_a_malformed_date():
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        run_ds({"ds": "06/05/2024"}, None)


def test_raw_logs_present_needs_a_visible_file(recsys_home):
    folder = recsys_home / "landing" / "interactions" / "ds=2024-05-06"
    assert raw_logs_present("2024-05-06") is False
    folder.mkdir(parents=True)
    (folder / "_SUCCESS").touch()
    (folder / ".part.tmp").touch()
    assert raw_logs_present("2024-05-06") is False
    (folder / "events.jsonl").write_text("{}\n")
    assert raw_logs_present("2024-05-06") is True
    assert raw_logs_present("2024-05-07") is False


def test_record_failure_writes_which_task_failed_and_why(recsys_home):
    ti = SimpleNamespace(dag_id="recsys_nightly", task_id="train", run_id="manual__2024-05-06",
                         map_index=1, try_number=3)
    run = SimpleNamespace(logical_date=dt.datetime(2024, 5, 6, 2, tzinfo=UTC), run_after=None)
    record_failure({"ti": ti, "exception": RuntimeError("CUDA out of memory"),
                    "params": {"ds": None}, "dag_run": run})
    (path,) = (recsys_home / "airflow" / "failures").iterdir()
    record = json.loads(path.read_text())
    assert record["task_id"] == "train" and record["map_index"] == 1 and record["try_number"] == 3
    assert record["error_type"] == "RuntimeError"
    assert record["error"] == "CUDA out of memory"
    assert record["ds"] == "2024-05-06"
    assert path.name.endswith("__train.1__try3.json")


def test_record_failure_never_raises(recsys_home):
    record_failure({})  # no ti: logged, not raised


def test_deadline_missed_writes_a_record(recsys_home):
    deadline_missed(context={"dag_run": {"dag_id": "recsys_nightly", "dag_run_id": "scheduled__x",
                                         "state": "running"},
                             "deadline": {"deadline_time": "2024-05-07T06:00:00+00:00"}})
    (path,) = (recsys_home / "airflow" / "deadlines").iterdir()
    record = json.loads(path.read_text())
    assert record["run_id"] == "scheduled__x"
    assert record["deadline_time"] == "2024-05-07T06:00:00+00:00"


def _publish(warehouse, ds, rows):
    import pandas as pd

    part = warehouse / "recommendations" / f"ds={ds}"
    part.mkdir(parents=True)
    pd.DataFrame(rows, columns=["user_id", "item_id", "rank"]).to_parquet(part / "part-0.parquet")
    (part / "_SUCCESS").touch()


def test_refresh_exports_views_every_partition_and_exports_the_newest(tmp_path):
    import duckdb

    wh = tmp_path / "warehouse"
    _publish(wh, "2024-05-05", [("u1", "i1", 1)])
    _publish(wh, "2024-05-06", [("u1", "i2", 1), ("u2", "i1", 1)])
    # An unfinished partition (no _SUCCESS) is not the newest.
    (wh / "recommendations" / "ds=2024-05-07").mkdir()
    out = refresh_exports(wh, tmp_path / "exports")
    assert out["ds"] == "2024-05-06" and out["rows"] == 2
    assert (tmp_path / "exports" / "recommendations_latest.csv").read_text().splitlines() == [
        "user_id,item_id,rank,ds", "u1,i2,1,2024-05-06", "u2,i1,1,2024-05-06"]
    with duckdb.connect(out["duckdb"], read_only=True) as con:
        per_ds = con.execute("SELECT CAST(ds AS VARCHAR), count(*) FROM recommendations "
                             "GROUP BY ALL ORDER BY 1").fetchall()
    assert per_ds == [("2024-05-05", 1), ("2024-05-06", 2)]


def test_refresh_exports_fails_loudly_with_nothing_published(tmp_path):
    with pytest.raises(FileNotFoundError, match="no published partition"):
        refresh_exports(tmp_path / "warehouse", tmp_path / "exports")
