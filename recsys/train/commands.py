"""`recsys train` and `recsys evaluate`: the same entry points the DAG runs, without Airflow."""
from __future__ import annotations


def register(sub, bench_sub) -> None:
    from recsys.cli import add_job_command

    add_job_command(sub, "train", "train", "train model families for a ds (MLflow run + registered version)")
    add_job_command(sub, "evaluate", "evaluate", "champion/challenger gate for the versions trained for a ds")
