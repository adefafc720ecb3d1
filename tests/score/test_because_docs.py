"""docs/tables.md's `because` queries run as printed against a published table and an items table."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.config import ScoreConfig
from recsys.score.engine import write_topn
from tests.score.conftest import PROV, fit_bundle, make_data

DS = "2026-11-21"
DOC = Path(__file__).resolve().parents[2] / "docs" / "tables.md"


def doc_query(section: str) -> str:
    """The statement after the `-- because:` comment in the ``section`` part of docs/tables.md."""
    text = DOC.read_text().split(f"### {section}", 1)[1]
    stmt = text.split("-- because: one user's list with titles", 1)[1].split("\n", 1)[1]
    return stmt.split(";", 1)[0]


@pytest.fixture()
def warehouse(tmp_path):
    """A published day of recommendations and an items table of two days (titles renamed on the
    second: the query must show the newest)."""
    data = make_data()
    wh = tmp_path / "warehouse"
    write_topn(fit_bundle(data), data, PROV, wh / "recommendations" / f"ds={DS}", ScoreConfig(top_n=4))
    for ds, prefix in (("2026-11-20", "Old title"), (DS, "Title")):
        folder = wh / "items" / f"ds={ds}"
        folder.mkdir(parents=True)
        pq.write_table(pa.table({"item_id": data.item_ids,
                                 "title": [f"{prefix} of {i}" for i in data.item_ids]}), folder / "part-0.parquet")
    user = str(data.user_ids[3])
    expected = pq.read_table(wh / "recommendations" / f"ds={DS}").to_pandas().query("user_id == @user")
    return wh, user, expected


def check(rows, expected) -> None:
    assert [r[0] for r in rows] == list(expected["rank"])
    for (rank, item, title, source, reason, because_titles), want in zip(rows, expected.itertuples()):
        assert (item, title, source, reason) == (want.item_id, f"Title of {want.item_id}", "model", "history")
        assert because_titles == " | ".join(f"Title of {b}" for b in want.because)
    assert any(len(b) > 1 for b in expected.because)  # the joined titles keep their order


def test_duckdb_because_query_shows_titles_of_the_list_and_its_reasons(warehouse):
    import duckdb

    wh, user, expected = warehouse
    sql = doc_query("DuckDB").replace("warehouse/", f"{wh}/").replace("'u123'", f"'{user}'")
    check(duckdb.sql(sql).fetchall(), expected)


@pytest.mark.slow  # a Spark SQL query: seconds once a session is up, the session takes longer
def test_spark_sql_because_query_shows_titles_of_the_list_and_its_reasons(spark, warehouse):
    wh, user, expected = warehouse
    spark.read.parquet(str(wh / "recommendations")).createOrReplaceTempView("recommendations")
    sql = doc_query("Spark SQL").replace("warehouse/", f"{wh}/").replace("'u123'", f"'{user}'")
    rows = [tuple(r) for r in spark.sql(sql).collect()]
    check(rows, expected)
    assert np.all(np.diff([r[0] for r in rows]) > 0)
