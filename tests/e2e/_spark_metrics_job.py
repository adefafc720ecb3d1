"""A Spark application for the cluster tests: the Spark ranking metrics
(:func:`recsys.evaluate.spark_metrics.ranking_metrics_spark`) of a top-N table against a table
of relevant (user_id, item_id) pairs, printed as one JSON line.

    spark-submit --master spark://127.0.0.1:7077 tests/e2e/_spark_metrics_job.py RECS RELEVANT K

Both tables are Parquet folders the executors read themselves. The Spark settings are the
environment's (``RECSYS_ENV``), as for the pipeline's jobs.
"""
from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    recs, relevant, k = argv[0], argv[1], int(argv[2])
    from recsys.config import load_config
    from recsys.evaluate.spark_metrics import ranking_metrics_spark
    from recsys.spark import get_spark

    spark = get_spark("metrics", load_config().spark)
    got = ranking_metrics_spark(spark.read.parquet(recs), spark.read.parquet(relevant), k)
    print("METRICS " + json.dumps(got, sort_keys=True), flush=True)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
