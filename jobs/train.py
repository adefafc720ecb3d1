"""Train model families on the day's training set; log to MLflow and register versions.

    python -m jobs.train --ds 2026-11-21 [--models mf_bpr,ease] [--epochs 5]

With ``train.processes: N`` (N > 1) the job re-launches itself as N ranks under torchrun
(``torchrun --standalone --nproc-per-node N -m jobs.train <same arguments>``, marked so that the
ranks train instead of launching again) and exits with torchrun's exit code. With
``--launcher spark`` the ranks run as Spark barrier tasks instead (TorchDistributor, one task per
rank on the executors, which need this repository at the same path).
"""
from __future__ import annotations

import argparse
import sys

from jobs._common import add_models_arg, job_parser, models_from, setup, to_argv
from recsys import distributed


def _positive_int(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = job_parser(__doc__.splitlines()[0])
    add_models_arg(p)
    p.add_argument("--epochs", type=_positive_int, default=None, help="override every model's epochs")
    p.add_argument("--max-restarts", type=int, default=1,
                   help="with train.processes > 1: how often torchrun restarts all ranks after "
                        "one dies (they resume from the last checkpoint)")
    p.add_argument("--launcher", choices=("torchrun", "spark"), default="torchrun",
                   help="with train.processes > 1: torchrun on this machine, or Spark barrier "
                        "tasks (TorchDistributor) on the executors of spark.master")
    return p


def run(args: argparse.Namespace) -> int:
    cfg = setup(args)
    families = models_from(args, cfg)  # every name checked before anything is trained or launched
    if cfg.train.processes > 1 and not distributed.launched():
        return distributed.relaunch(cfg, "jobs.train", __file__, to_argv(build_parser(), args),
                                    launcher=args.launcher, max_restarts=args.max_restarts)
    from recsys.steps.train import train_families

    with distributed.process_group():  # joins it when torchrun started this process as a rank
        results = train_families(cfg, args.ds, families, epochs=args.epochs)
    for r in results:
        print(f"trained {r.name} version {r.version} (run {r.run_id}) in {r.seconds:.1f}s")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
