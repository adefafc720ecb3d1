"""Champion/challenger gate: compare the version trained for ds with the champion on held-out data.

    python -m jobs.evaluate --ds 2026-11-21 [--models mf_bpr]
"""
from __future__ import annotations

import sys

from jobs._common import job_parser, setup


def main(argv: list[str] | None = None) -> int:
    p = job_parser(__doc__.splitlines()[0])
    p.add_argument("--models", default=None, help="comma-separated families (default: train.models)")
    args = p.parse_args(argv)
    cfg = setup(args)
    from recsys.train.nightly import evaluate_families

    families = args.models.split(",") if args.models else list(cfg.train.models)
    for family, d in evaluate_families(cfg, args.ds, families).items():
        print(f"{family}: {'PROMOTED' if d.promote else 'KEPT CHAMPION'} - {d.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
