"""The ``recsys`` command: every pipeline step without Airflow, plus importers and benchmarks.

``recsys <step>`` runs the step's job (:mod:`recsys.cli.steps`), ``recsys generate|import``
writes landing data (:mod:`recsys.cli.data`), ``recsys score-pairs`` scores given pairs
(:mod:`recsys.cli.score`) and ``recsys bench <name>`` runs a benchmark (:mod:`recsys.cli.bench`).
Each subcommand sets ``func(args) -> int``.
"""
from __future__ import annotations

import argparse

from recsys.cli import bench, data, score, steps


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    steps.register(sub)
    data.register(sub)
    score.register(sub)
    bench.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
