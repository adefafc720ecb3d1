"""Argument parsing shared by the job entry points (parse args -> load config)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from recsys.config import Config, ConfigError, load_config, parse_model_list
from recsys.io import parse_ds


def parse_set(values: list[str]) -> dict[str, Any]:
    """``--set key.path=value`` pairs; values are parsed as YAML (numbers, lists, booleans)."""
    out: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def job_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--ds", required=True, help="logical date YYYY-MM-DD (the partition to process)")
    p.add_argument("--env", default=None,
                   help="the name of a conf/env/<ENV>.yaml to apply, not a path (default: $RECSYS_ENV or local)")
    p.add_argument("--conf-dir", type=Path, default=None, help="configuration folder (default: conf/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set score.top_n=20 (repeatable)")
    return p


def spark_job_parser(description: str) -> argparse.ArgumentParser:
    """``job_parser`` plus what every Spark step takes: ``--warehouse`` and ``--master``."""
    p = job_parser(description)
    p.add_argument("--warehouse", type=Path, default=None, help="warehouse root (default: config)")
    p.add_argument("--master", default=None, help="Spark master (default: spark-submit's or config)")
    return p


def to_argv(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The options that ``parser`` parses back into ``args``: how a job re-launches itself."""
    out: list[str] = []
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        value, flag = getattr(args, action.dest, None), action.option_strings[-1]
        if isinstance(action, argparse._AppendAction):
            for v in value or ():
                out += [flag, str(v)]
        elif action.nargs == 0:  # store_true / store_false
            if value != action.default:
                out.append(flag)
        elif value is not None:
            out += [flag, str(value)]
    return out


def setup(args: argparse.Namespace, extra_overrides: dict[str, Any] | None = None) -> Config:
    """Validate ``--ds``, configure logging and load the configuration."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        parse_ds(args.ds)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    overrides = parse_set(args.set)
    overrides.update(extra_overrides or {})
    try:
        return load_config(env=args.env, overrides=overrides, conf_dir=args.conf_dir)
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None


def add_models_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default=None,
                   help="comma-separated families (default: train.models); every name is checked "
                        "before any work starts")


def models_from(args: argparse.Namespace, cfg: Config) -> list[str]:
    """``--models`` (or ``train.models``), checked: empty or unknown names are an error, up front."""
    try:
        return list(parse_model_list(args.models, cfg.train.models))
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
