"""Clean one day of raw interaction logs: landing -> warehouse interactions + quarantine + DQ summary.

    spark-submit jobs/clean_interactions.py --ds 2024-01-01 [--landing DIR --warehouse DIR]
    python -m jobs.clean_interactions --ds 2024-01-01
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # spark-submit runs this file as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs._common import setup, spark_job_parser  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = spark_job_parser(__doc__.splitlines()[0])
    p.add_argument("--landing", type=Path, default=None, help="landing root (default: config)")
    return p


def run(args: argparse.Namespace) -> int:
    from recsys.steps.clean import clean_ds

    clean_ds(setup(args), args.ds, args.landing, args.warehouse, master=args.master)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
