"""Train model families on the day's training set; log to MLflow and register versions.

    python -m jobs.train --ds 2026-11-21 [--models mf_bpr,ease] [--epochs 5]
"""
from __future__ import annotations

import argparse
import sys

from jobs._common import add_models_arg, job_parser, models_from, setup


def _positive_int(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = job_parser(__doc__.splitlines()[0])
    add_models_arg(p)
    p.add_argument("--epochs", type=_positive_int, default=None, help="override every model's epochs")
    return p


def run(args: argparse.Namespace) -> int:
    cfg = setup(args)
    families = models_from(args, cfg)  # every name checked before anything is trained
    from recsys.steps.train import train_families

    for r in train_families(cfg, args.ds, families, epochs=args.epochs):
        print(f"trained {r.name} version {r.version} (run {r.run_id}) in {r.seconds:.1f}s")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
