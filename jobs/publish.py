"""Validate the staged top-N table of a day and publish it atomically; apply retention.

    python -m jobs.publish --ds 2026-11-21 [--force] [--register-table] [--validate-only]

--force publishes despite failed reference checks (missing active users, seen items, unavailable
items); structural checks (schema, nulls, ranks, duplicates, rising scores) can never be skipped.
Exit status 1 with the failed checks on stderr when the table is refused.
"""
from __future__ import annotations

import argparse
import sys

from jobs._common import job_parser, setup


def build_parser() -> argparse.ArgumentParser:
    p = job_parser(__doc__.splitlines()[0])
    p.add_argument("--force", action="store_true", help="skip the reference (non-structural) checks")
    p.add_argument("--register-table", action="store_true",
                   help="also create/refresh the external table `recommendations` in Spark's catalog")
    p.add_argument("--validate-only", action="store_true",
                   help="run the checks on the staged table and exit; publish nothing")
    return p


def run(args: argparse.Namespace) -> int:
    cfg = setup(args)
    from recsys.steps.publish import TableRejected, publish_ds, validate_ds

    try:
        if args.validate_only:
            checks = validate_ds(cfg, args.ds, force=args.force)
            print(f"ds={args.ds}: staged table passes {len(checks)} checks"
                  + "".join(f"\n  skipped (--force): {c.name}" for c in checks if c.skipped))
            return 0
        m = publish_ds(cfg, args.ds, force=args.force, register_table=args.register_table)
    except (TableRejected, FileNotFoundError) as exc:
        print(f"error: ds={args.ds} not published, the previous partition is unchanged.\n{exc}",
              file=sys.stderr)
        return 1
    print(f"published ds={args.ds}: {m['row_count']} rows, {m['user_count']} users, "
          f"{m['model_name']} v{m['model_version']} (run {m['mlflow_run_id']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
