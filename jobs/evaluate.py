"""Champion/challenger gate: compare the version trained for ds with the champion on held-out data.

    python -m jobs.evaluate --ds 2026-11-21 [--models mf_bpr] [--force-promote]

A version trained on older data than the champion (a backfill of a past day) is never promoted;
``--force-promote`` lifts that rule (the metric comparison still decides).
"""
from __future__ import annotations

import argparse
import sys

from jobs._common import add_models_arg, job_parser, models_from, setup


def build_parser() -> argparse.ArgumentParser:
    p = job_parser(__doc__.splitlines()[0])
    add_models_arg(p)
    p.add_argument("--force-promote", action="store_true",
                   help="allow promoting a version trained on older data (an earlier ds) than the "
                        "champion; the metric comparison still applies")
    return p


def run(args: argparse.Namespace) -> int:
    cfg = setup(args)
    families = models_from(args, cfg)  # every name checked before any model is loaded
    from recsys.steps.evaluate import evaluate_families

    decisions = evaluate_families(cfg, args.ds, families, force_promote=args.force_promote)
    for family, d in decisions.items():
        print(f"{family}: {'PROMOTED' if d.promote else 'KEPT CHAMPION'} - {d.reason}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
