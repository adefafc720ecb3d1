"""`recsys clean`, `recsys features` and `recsys bench clean`: the DAG's steps without Airflow."""
from __future__ import annotations

from pathlib import Path

_STEPS = (
    ("clean", "clean_interactions", "clean one ds of raw logs into the warehouse"),
    ("features", "build_features", "build the training set of one ds from clean interactions"),
)


def register(sub, bench_sub) -> None:
    from recsys.cli import add_job_command

    for name, job, help_ in _STEPS:
        add_job_command(sub, name, job, help_)
    b = bench_sub.add_parser("clean", help="clean N generated events with Spark and with DuckDB")
    b.add_argument("--events", type=int, default=1_000_000)
    b.add_argument("--bad-row-rate", type=float, default=0.02)
    b.add_argument("--workdir", type=Path, default=Path(".bench/clean"),
                   help="where the generated landing and outputs go (reused when present)")
    b.add_argument("--master", default="local[2]")
    b.add_argument("--json", type=Path, default=None, help="also write the figures here")
    b.set_defaults(func=_bench)


def _bench(args) -> int:
    from recsys.etl.bench import run_bench

    run_bench(args.events, args.workdir, master=args.master, bad_row_rate=args.bad_row_rate,
              json_out=args.json)
    return 0
