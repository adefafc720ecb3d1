"""The benchmark's DuckDB engine files every generated row exactly as the Spark job does."""
from __future__ import annotations

import pytest

from recsys.bench import duck_clean
from recsys.data.generator import generate_landing
from recsys.steps.clean import run_clean


@pytest.mark.slow
def test_spark_and_duckdb_books_agree(spark, config, tmp_path):
    ds = "2024-01-10"
    qa = ("qa-1", "qa-2")
    config = config.model_copy(update={"clean": config.clean.model_copy(update={"internal_users": qa})})
    report = generate_landing(tmp_path / "landing", ds, 1, seed=9, n_users=40, n_items=30,
                              events_per_day=900, bad_row_rate=0.08, chunk_size=200,
                              internal_users=qa, internal_rate=0.03)
    summary = run_clean(spark, config, ds, tmp_path / "landing", tmp_path / "wh")
    duck = duck_clean.clean(tmp_path / "landing" / "interactions" / f"ds={ds}", tmp_path / "duck",
                            ds, config.clean)
    assert duck["books"] == {k: summary[k] for k in ("raw", "clean", "duplicates", "quarantined")}
    assert duck["reasons"] == {k: v for k, v in summary["reasons"].items() if v}
    # Generated internal/test accounts reach the clean step's internal_user rule, every row.
    assert summary["reasons"]["internal_user"] == report["internal_events"] > 0
