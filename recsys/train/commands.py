"""`recsys train` and `recsys evaluate`: the same entry points the DAG runs, without Airflow;
and `recsys bench train`, the training-throughput benchmark (:mod:`recsys.train.bench`)."""
from __future__ import annotations

import argparse
import logging


def register(sub, bench_sub) -> None:
    from recsys.cli import add_job_command

    add_job_command(sub, "train", "train", "train model families for a ds (MLflow run + registered version)")
    add_job_command(sub, "evaluate", "evaluate", "champion/challenger gate for the versions trained for a ds")

    p = bench_sub.add_parser("train", help="train every family on MovieLens-100K-sized data: "
                                           "samples/s, wall seconds, peak RSS")
    p.add_argument("--data", help="MovieLens folder (default: synthetic data of ML-100K shape)")
    p.add_argument("--shape", default="943x1682x100000",
                   help="USERSxITEMSxRATINGS of the synthetic data (ignored with --data)")
    p.add_argument("--models", help="comma-separated families (default: every registered one)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--epochs", type=int, help="override every family's epochs (default: its config)")
    p.add_argument("--timeout", type=float, default=1800.0,
                   help="seconds one family may train before it is stopped and reported failed")
    p.add_argument("--threads", type=int, help="torch intra-op threads per family (default: torch's)")
    p.add_argument("--in-process", action="store_true",
                   help="train in this process (faster start; peak RSS is then the running peak)")
    p.add_argument("--json", dest="json_out", help="write the results here")
    p.set_defaults(func=_bench_train)


def _bench_train(args: argparse.Namespace) -> int:
    from recsys.models.registry import model_names
    from recsys.io import write_json
    from recsys.train.bench import load_interactions, markdown_table, run_train_bench
    from recsys.train.device import choose_device

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    families = ([m.strip() for m in args.models.split(",") if m.strip()] if args.models
                else model_names())
    shape = tuple(int(x) for x in args.shape.lower().split("x"))
    if len(shape) != 3:
        raise SystemExit(f"--shape must be USERSxITEMSxRATINGS, got {args.shape!r}")
    data, description = load_interactions(args.data, seed=args.seed, shape=shape)
    result = run_train_bench(data, families, device=str(choose_device(args.device)),
                             seed=args.seed, epochs=args.epochs, isolate=not args.in_process,
                             timeout=args.timeout, description=description,
                             threads=args.threads)
    print(markdown_table(result))
    if args.json_out:
        write_json(result, args.json_out)
    return 1 if any(r.get("error") for r in result["families"]) else 0
