"""`recsys train` and `recsys evaluate`: the same entry points the DAG runs, without Airflow."""
from __future__ import annotations

import argparse
import importlib


def register(sub, bench_sub) -> None:
    for name, help_ in (("train", "train model families for a ds (MLflow run + registered version)"),
                        ("evaluate", "champion/challenger gate for the versions trained for a ds")):
        # Arguments pass through untouched to jobs/<name>.py, which owns them (try --help).
        p = sub.add_parser(name, help=help_, add_help=False)
        p.add_argument("argv", nargs=argparse.REMAINDER)
        p.set_defaults(func=lambda args, name=name: importlib.import_module(f"jobs.{name}").main(args.argv))
