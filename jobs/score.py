"""Score all users of a day's training set with the version that serves the day; stage the top-N table.

    python -m jobs.score --ds 2026-11-21 [--model mf_bpr] [--rescore-with-champion]

The version: on a rerun of a published day, the one that served it (read from its
``_manifest.json``); otherwise the champion, unless the champion was trained on data after the
day (a backfill), then the newest promoted version trained on data up to the day.
``--rescore-with-champion`` always uses the current champion. See
``recsys.steps.score.choose_version``.

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
    p.add_argument("--rescore-with-champion", action="store_true",
                   help="score with the current champion even when another version served this "
                        "day's published partition (default: a rerun reproduces the day)")
    return p


def run(args: argparse.Namespace) -> int:
    cfg = setup(args, {"score.model": args.model} if args.model else None)
    from recsys.steps.score import score_ds

    try:
        staged = score_ds(cfg, args.ds, rescore_with_champion=args.rescore_with_champion)
    except LookupError as exc:  # no version may serve this day: say which and why, no traceback
        raise SystemExit(f"error: {exc}") from None
    print(f"staged {staged}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
