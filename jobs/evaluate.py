"""Champion/challenger gate: compare the version trained for ds with the champion on held-out data.

    python -m jobs.evaluate --ds 2026-11-21 [--models mf_bpr]
"""
from __future__ import annotations

import argparse
import sys

from jobs._common import add_models_arg, job_parser, models_from, setup


def build_parser() -> argparse.ArgumentParser:
    p = job_parser(__doc__.splitlines()[0])
    add_models_arg(p)
    return p


def run(args: argparse.Namespace) -> int:
    cfg = setup(args)
    families = models_from(args, cfg)  # every name checked before any model is loaded
    from recsys.steps.evaluate import evaluate_families

    for family, d in evaluate_families(cfg, args.ds, families).items():
        print(f"{family}: {'PROMOTED' if d.promote else 'KEPT CHAMPION'} - {d.reason}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
