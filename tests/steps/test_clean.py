"""The clean step end to end on tiny landing folders: outputs, books, re-runs, errors."""
from __future__ import annotations

import json

import pytest

from recsys import io
from recsys.etl import quality
from recsys.etl.landing import LandingError
from recsys.steps.clean import run_clean

GOOD = '{"event_id":"%s","user_id":"u1","item_id":"i1","event_type":"view","ts":"%sT08:00:00Z"}\n'


def _land(root, ds, lines):
    d = root / "interactions" / f"ds={ds}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "log.jsonl").write_text("".join(lines))


@pytest.fixture()
def cfg(config):
    return config


def test_clean_publishes_tables_summary_and_side_inputs(spark, cfg, tmp_path):
    landing, wh = tmp_path / "landing", tmp_path / "wh"
    ds = "2024-01-10"
    _land(landing, ds, [GOOD % ("a", ds), GOOD % ("a", ds), GOOD % ("b", ds), "oops\n"])
    items = landing / "items" / f"ds={ds}"
    items.mkdir(parents=True)
    (items / "items.csv").write_text("item_id,title,genres,available\ni1,Star,drama|war,false\n,x,y,true\n")
    tracker = spark.sparkContext.statusTracker()
    jobs_before = len(tracker.getJobIdsForGroup(None))
    summary = run_clean(spark, cfg, ds, landing, wh)
    # Regression (issue 3): a tiny day ran ~50 Spark jobs (a cached frame scanned by lookups,
    # a counting pass and both writes, then both outputs read back); each costs fixed overhead.
    assert len(tracker.getJobIdsForGroup(None)) - jobs_before <= 14
    assert {k: summary[k] for k in ("raw", "clean", "duplicates", "quarantined")} == {
        "raw": 4, "clean": 2, "duplicates": 1, "quarantined": 1}
    assert summary["reasons"]["malformed_row"] == 1
    assert summary["side_inputs"] == {"items": {"rows": 1, "rejected": 1}}
    part = io.partition_path(wh, "interactions", ds)
    # The stats come from the tally and the write, not from re-reading: they must match the files.
    assert _stats(summary) == quality.clean_stats(spark.read.parquet(str(part)))
    assert io.is_complete(part)
    assert json.loads((part / quality.DQ_SUMMARY_FILE).read_text())["clean"] == 2
    assert sorted(r["event_id"] for r in spark.read.parquet(str(part)).collect()) == ["a", "b"]
    assert [r["reason"] for r in spark.read.parquet(str(io.partition_path(wh, "quarantine", ds))).collect()] == ["malformed_row"]
    item = spark.read.parquet(str(io.partition_path(wh, "items", ds))).collect()
    assert [(r["item_id"], r["genres"], r["available"]) for r in item] == [("i1", ["drama", "war"], False)]
    assert not list((wh / "_staging").glob("*/*"))  # nothing left behind


def _stats(summary):
    return {k: summary[k] for k in ("clean", "distinct_users", "distinct_items", "ts_min", "ts_max")}


def test_bot_rows_are_in_the_books_per_reason_and_per_file(spark, cfg, tmp_path):
    landing, wh = tmp_path / "landing", tmp_path / "wh"
    ds = "2024-01-10"
    ev = '{"event_id":"%s","user_id":"%s","item_id":"%s","event_type":"view","ts":"%sT0%d:00:00Z"}\n'
    # u-bot's three events make it a bot (threshold 2); item i-bot was seen by the bot only.
    _land(landing, ds, [ev % ("b1", "u-bot", "i-bot", ds, 1), ev % ("b2", "u-bot", "i1", ds, 2),
                        ev % ("b3", "u-bot", "i1", ds, 3), ev % ("h1", "u1", "i1", ds, 5),
                        ev % ("h2", "u2", "i2", ds, 6), "oops\n"])
    bots = cfg.model_copy(update={"clean": cfg.clean.model_copy(update={"bot_max_events_per_day": 2})})
    summary = run_clean(spark, bots, ds, landing, wh)
    assert summary["reasons"]["bot_user"] == 3 and summary["quarantined"] == 4
    assert summary["files"] == [{"file": "log.jsonl", "format": "json", "raw": 6, "quarantined": 4}]
    clean = spark.read.parquet(str(io.partition_path(wh, "interactions", ds)))
    assert _stats(summary) == quality.clean_stats(clean) == {
        "clean": 2, "distinct_users": 2, "distinct_items": 2,
        "ts_min": f"{ds}T05:00:00", "ts_max": f"{ds}T06:00:00"}


@pytest.mark.slow
def test_rerun_replaces_only_its_own_partition(spark, cfg, tmp_path):
    landing, wh = tmp_path / "landing", tmp_path / "wh"
    for ds in ("2024-01-10", "2024-01-11"):
        _land(landing, ds, [GOOD % ("a", ds)])
        run_clean(spark, cfg, ds, landing, wh)
    other = io.partition_path(wh, "interactions", "2024-01-10")
    before = {p.name: p.stat().st_mtime_ns for p in other.iterdir()}
    _land(landing, "2024-01-11", [GOOD % ("a", "2024-01-11"), GOOD % ("z", "2024-01-11")])
    summary = run_clean(spark, cfg, "2024-01-11", landing, wh)
    assert summary["clean"] == 2
    assert {p.name: p.stat().st_mtime_ns for p in other.iterdir()} == before
    rows = spark.read.parquet(str(io.table_path(wh, "interactions"))).collect()
    assert sorted((str(r["ds"]), r["event_id"]) for r in rows) == [
        ("2024-01-10", "a"), ("2024-01-11", "a"), ("2024-01-11", "z")]


def test_unknown_format_is_quarantined_and_a_missing_folder_still_fails(spark, cfg, tmp_path):
    landing, wh = tmp_path / "landing", tmp_path / "wh"
    ds = "2024-01-10"
    _land(landing, ds, [GOOD % ("a", ds)])
    (landing / "interactions" / f"ds={ds}" / "x.avro").write_text("?")
    summary = run_clean(spark, cfg, ds, landing, wh)
    assert (summary["clean"], summary["quarantined"], summary["reasons"]["unreadable_file"]) == (1, 1, 1)
    [row] = spark.read.parquet(str(io.partition_path(wh, "quarantine", ds))).collect()
    assert (row["reason"], row["source_file"]) == ("unreadable_file", "x.avro")
    assert "unknown file format" in row["raw"]
    with pytest.raises(LandingError, match="does not exist"):
        run_clean(spark, cfg, "2024-01-12", landing, wh)
    assert not io.partition_path(wh, "interactions", "2024-01-12").exists()


def test_reconcile_fails_loudly_when_books_do_not_balance():
    summary = {"ds": "d", "raw": 10, "clean": 5, "duplicates": 1, "quarantined": 3,
               "reasons": {"bad_ts": 3}}
    with pytest.raises(quality.ReconciliationError, match="raw=10 but clean=5"):
        quality.reconcile(summary)
    quality.reconcile({**summary, "raw": 9})
