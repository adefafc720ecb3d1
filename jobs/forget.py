"""Erase users from the warehouse (the right to be forgotten); record them in the tombstone.

    python -m jobs.forget --user u42 [--user u43 ...] [--users-json '["u42", "u43"]']

See recsys/steps/forget.py and docs/privacy.md. Prints the report as JSON; exit status 1 when a
trace of a user is left afterwards.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from jobs._common import parse_set
from recsys.config import ConfigError, load_config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--user", action="append", default=[], metavar="ID",
                   help="a user id to erase (repeatable)")
    p.add_argument("--users-json", default=None, metavar="JSON",
                   help="a JSON list of user ids (how the recsys_forget DAG passes its form)")
    p.add_argument("--warehouse", type=Path, default=None, help="warehouse root (default: config)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the final search of the warehouse for traces of the users")
    p.add_argument("--env", default=None,
                   help="the name of a conf/env/<ENV>.yaml to apply (default: $RECSYS_ENV or local)")
    p.add_argument("--conf-dir", type=Path, default=None, help="configuration folder (default: conf/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable)")
    return p


def users_from(args: argparse.Namespace) -> list[str]:
    users = list(args.user)
    if args.users_json:
        try:
            extra = json.loads(args.users_json)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"error: --users-json is not JSON: {exc}") from None
        if not isinstance(extra, list) or not all(isinstance(u, (str, int)) for u in extra):
            raise SystemExit("error: --users-json must be a JSON list of ids")
        users += [str(u) for u in extra]
    if not users:
        raise SystemExit("error: no user to forget: pass --user ID (repeatable) or --users-json")
    return users


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    users = users_from(args)
    try:
        cfg = load_config(env=args.env, overrides=parse_set(args.set), conf_dir=args.conf_dir)
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    from recsys.steps.forget import ForgetIncomplete, forget_users

    try:
        report = forget_users(cfg, users, warehouse=args.warehouse, verify=not args.no_verify)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    except ForgetIncomplete as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.as_dict(), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
