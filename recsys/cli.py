"""The ``recsys`` command: every pipeline step without Airflow, plus importers and benchmarks.

Each area registers its own subcommands in a ``commands.py`` module (listed below), so this file
stays a dispatcher. A module there exposes ``register(subparsers)``; each subcommand sets
``func(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = (
    "recsys.etl.commands",        # clean, features
    "recsys.data.commands",       # generate, import
    "recsys.train.commands",      # train
    "recsys.evaluate.commands",   # evaluate, bench quality
    "recsys.score.commands",      # score, publish, score-pairs, bench scoring
)


def add_job_command(sub, name: str, job: str, help_: str) -> None:
    """``recsys <name>`` runs ``jobs/<job>.py``: same arguments (its ``build_parser()``), same code
    (its ``run(args)``), so the CLI and the DAG cannot drift apart."""
    module = importlib.import_module(f"jobs.{job}")
    p = sub.add_parser(name, help=help_, parents=[module.build_parser()], add_help=False)
    p.set_defaults(func=module.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="benchmarks that print figures")
    parser.bench_subparsers = bench.add_subparsers(dest="bench", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # area not built yet
                continue
            raise
        module.register(sub, parser.bench_subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
