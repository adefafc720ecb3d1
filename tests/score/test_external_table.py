"""The published partitions as an external table in Spark's catalog."""
from __future__ import annotations

import pytest

from recsys.score.publish import register_external_table
from tests.test_publish import GOOD, do_publish, stage, table


@pytest.mark.slow  # Spark SQL DDL and a scan: ~20 s on a busy machine
def test_register_sees_new_partitions_and_forgets_dropped_ones(spark, tmp_path):
    for day in ("2024-03-01", "2024-03-02"):
        stage(tmp_path, day, table(GOOD))
        do_publish(tmp_path, ds=day, keep=2)
    assert register_external_table(spark, tmp_path, name="recs_test") == ["2024-03-01", "2024-03-02"]
    rows = spark.sql("SELECT ds, count(*) AS n FROM recs_test GROUP BY ds ORDER BY ds").collect()
    assert [(r.ds, r.n) for r in rows] == [("2024-03-01", 6), ("2024-03-02", 6)]

    stage(tmp_path, "2024-03-03", table(GOOD))
    do_publish(tmp_path, ds="2024-03-03", keep=2)  # retention drops 2024-03-01
    assert register_external_table(spark, tmp_path, name="recs_test") == ["2024-03-02", "2024-03-03"]
    top = spark.sql("SELECT item_id FROM recs_test WHERE ds = '2024-03-03' AND user_id = 'u1' "
                    "ORDER BY rank").collect()
    assert [r.item_id for r in top] == ["i3", "i4"]
    spark.sql("DROP TABLE recs_test")
