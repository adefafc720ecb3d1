"""
### recsys_consumer — refresh the DuckDB views and the CSV export of the recommendations

Scheduled on the `recsys_recommendations` asset: runs after every successful publish of
`recsys_nightly`. It (re)creates `$RECSYS_HOME/exports/recsys.duckdb` with two views,
`recommendations` (every published partition, `ds` as a column) and `recommendations_latest`
(the newest partition), and writes the newest partition to
`$RECSYS_HOME/exports/recommendations_latest.csv`. Views read the Parquet files in place, so the
refresh is cheap and repeatable; a re-published partition shows up without any copy.
"""
from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from airflow.sdk import DAG, Asset, task

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _recsys_dag_support import RECOMMENDATIONS_ASSET, record_failure  # noqa: E402

RECOMMENDATIONS = Asset(**RECOMMENDATIONS_ASSET)


with DAG(
    dag_id="recsys_consumer",
    description="Refresh DuckDB views and the CSV export after each publish",
    doc_md=__doc__,
    schedule=[RECOMMENDATIONS],
    # Unpaused from the start: "runs after each publish" must hold without a click in the UI.
    is_paused_upon_creation=False,
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(minutes=30),
    default_args={
        "owner": "recsys",
        "retries": 2,
        "retry_delay": dt.timedelta(minutes=1),
        "execution_timeout": dt.timedelta(minutes=15),
        "on_failure_callback": record_failure,
    },
    tags=["recsys", "consumer", "duckdb"],
):

    @task
    def refresh(triggering_asset_events=None) -> dict[str, object]:
        """Refresh the exports from the table the triggering publish wrote."""
        from recsys.config import load_config
        from recsys.steps.export import refresh_exports

        for event in (triggering_asset_events or {}).get(RECOMMENDATIONS, []):
            print(f"triggered by {event.source_dag_id}/{event.source_run_id} at {event.timestamp}")
        cfg = load_config()
        result = refresh_exports(cfg.paths.warehouse, cfg.paths.home / "exports")
        print(f"exported ds={result['ds']}: {result['rows']} rows -> {result['csv']}")
        return result

    refresh()
