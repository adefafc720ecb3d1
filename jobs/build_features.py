"""Build the training set of one day from the clean interactions of the lookback window.

    spark-submit jobs/build_features.py --ds 2024-01-01 [--warehouse DIR]
    python -m jobs.build_features --ds 2024-01-01
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # spark-submit runs this file as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs._common import setup, spark_job_parser  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    return spark_job_parser(__doc__.splitlines()[0])


def run(args: argparse.Namespace) -> int:
    from recsys.steps.features import features_ds

    features_ds(setup(args), args.ds, args.warehouse, master=args.master)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
