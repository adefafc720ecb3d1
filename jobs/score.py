"""Score all users of a day's training set with the champion; stage the top-N table.

    python -m jobs.score --ds 2026-11-21 [--model mf_bpr]

Writes ``<warehouse>/_staging/recommendations/ds=D.pending/`` (never the live partition);
``jobs/publish.py`` validates and publishes it.
"""
from __future__ import annotations

import argparse
import sys

from jobs._common import job_parser, setup


def build_parser() -> argparse.ArgumentParser:
    p = job_parser(__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model family to score with (default: score.model)")
    return p


def run(args: argparse.Namespace) -> int:
    cfg = setup(args, {"score.model": args.model} if args.model else None)
    from recsys.steps.score import score_ds

    print(f"staged {score_ds(cfg, args.ds)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
