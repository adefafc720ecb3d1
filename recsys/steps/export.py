"""Warehouse-side exports of the published table: DuckDB views and a CSV of the newest partition.

Run by the ``recsys_consumer`` DAG after every publish (it is scheduled on the table's asset).
"""
from __future__ import annotations

from pathlib import Path

from recsys.io import list_partitions, partition_path
from recsys.schema import RECOMMENDATIONS


def refresh_exports(warehouse: Path, exports: Path) -> dict[str, object]:
    """Point the DuckDB views at the published table; export the newest partition to CSV.

    Returns what was done (newest ``ds``, its row count, the paths). Raises if nothing is published.
    """
    import duckdb

    partitions = list_partitions(warehouse, RECOMMENDATIONS)
    if not partitions:
        raise FileNotFoundError(f"no published partition under {warehouse / RECOMMENDATIONS}")
    newest = partitions[-1]
    table_glob = warehouse / RECOMMENDATIONS / "ds=*" / "*.parquet"
    latest_glob = partition_path(warehouse, RECOMMENDATIONS, newest) / "*.parquet"
    exports.mkdir(parents=True, exist_ok=True)
    db, csv = exports / "recsys.duckdb", exports / "recommendations_latest.csv"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE OR REPLACE VIEW recommendations AS SELECT * FROM "
                    f"read_parquet('{table_glob}', hive_partitioning = true, union_by_name = true)")
        con.execute("CREATE OR REPLACE VIEW recommendations_latest AS SELECT * FROM "
                    f"read_parquet('{latest_glob}', hive_partitioning = true)")
        rows = con.execute("SELECT count(*) FROM recommendations_latest").fetchone()[0]
        tmp = csv.with_suffix(".csv.tmp")
        con.execute(f"COPY recommendations_latest TO '{tmp}' (HEADER, DELIMITER ',')")
    tmp.replace(csv)  # readers never see a half-written CSV
    return {"ds": newest, "rows": rows, "duckdb": str(db), "csv": str(csv)}
