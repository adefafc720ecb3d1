"""``recsys bench clean|scoring|quality|foldin|metrics|train``: benchmarks that print figures.

The code they run lives in :mod:`recsys.bench`; this module only parses their arguments.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks that print figures").add_subparsers(
        dest="bench", required=True)
    b = bench.add_parser("clean", help="clean N generated events with Spark and with DuckDB")
    b.add_argument("--events", type=int, default=1_000_000)
    b.add_argument("--bad-row-rate", type=float, default=0.02)
    b.add_argument("--workdir", type=Path, default=Path(".bench/clean"),
                   help="where the generated landing and outputs go (reused when present)")
    b.add_argument("--master", default="local[2]")
    b.add_argument("--json", type=Path, default=None, help="also write the figures here")
    b.set_defaults(func=_clean)

    b = bench.add_parser("scoring", help="all-users top-k: this engine vs Spark ALS vs a bare loop; "
                         "--engine spark: the Spark scorer from warehouse Parquet inputs")
    b.add_argument("--engine", choices=("local", "spark"), default="local",
                   help="local: the single-node engine (default); spark: synthetic vectors and seen "
                   "items written as warehouse Parquet, scored by the Spark engine")
    b.add_argument("--master", default="local[2]",
                   help="--engine spark: the Spark master (local[N] or spark://host:7077)")
    b.add_argument("--partitions", type=int, default=None,
                   help="--engine spark: scoring tasks (default: 4 per task slot)")
    b.add_argument("--shuffle-partitions", type=int, default=None,
                   help="--engine spark: spark.sql.shuffle.partitions (default: Spark's)")
    b.add_argument("--driver-memory", default="2g", help="--engine spark: spark.driver.memory")
    b.add_argument("--executor-memory", default="2g", help="--engine spark: spark.executor.memory")
    b.add_argument("--workdir", type=Path, default=None,
                   help="--engine spark: keep the warehouse and output here (default: a temp dir)")
    b.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                   help="--engine spark: more Spark settings, e.g. spark.executorEnv.PYTHONPATH=... "
                   "(repeatable)")
    b.add_argument("--no-warmup", action="store_true",
                   help="--engine spark: no warm-up run on 2,000 users first (the timed run then "
                   "pays the JVM's JIT and the Python workers' imports)")
    b.add_argument("--users", type=int, default=100_000)
    b.add_argument("--items", type=int, default=20_000)
    b.add_argument("--factors", type=int, default=64)
    b.add_argument("--k", type=int, default=100)
    b.add_argument("--seen", type=int, default=20, help="seen items per user (masked)")
    b.add_argument("--block-size", type=int, default=2048)
    b.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    b.add_argument("--skip-spark", action="store_true", help="do not time Spark ALS")
    b.add_argument("--repeat", type=int, default=1, help="best of R interleaved runs (engine, loop)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--json", type=Path, default=None, help="write the figures here")
    b.set_defaults(func=_scoring)

    p = bench.add_parser("quality", help="train every model, full-ranking metrics on a split")
    p.add_argument("--data", required=True,
                   help="MovieLens folder (100K, 1M, latest) or delimited ratings file with header")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", dest="json_out", help="write the results here")
    p.add_argument("--models", help="comma-separated families (default: every registered one)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    p.add_argument("--protocol", choices=("reference", "sampled"), default="reference",
                   help="reference: per-user 75/25 split, full ranking (default); sampled: last "
                   "interaction held out among 99 sampled negatives (NCF paper), for comparison only")
    p.set_defaults(func=_quality)

    p = bench.add_parser("foldin", help="new users served tonight: NDCG@k of fold-in vs the popular "
                         "fallback for users held out of training (docs/benchmarks.md, Fold-in)")
    p.add_argument("--data", required=True, help="MovieLens folder or delimited ratings file with header")
    p.add_argument("--models", default="mf_bpr,ials,ease", help="comma-separated families")
    p.add_argument("--holdout", type=float, default=0.1, help="share of users held out of training")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.set_defaults(func=_foldin)

    m = bench.add_parser("metrics", help="time the ranking metrics on random top-k lists")
    m.add_argument("--users", type=int, default=6000)
    m.add_argument("--items", type=int, default=4000)
    m.add_argument("--relevant", type=int, default=40, help="held-out items per user")
    m.add_argument("--k", type=int, default=10)
    m.add_argument("--repeat", type=int, default=3)
    m.set_defaults(func=_metrics)

    p = bench.add_parser("train", help="train every family on MovieLens-100K-sized data: "
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
    p.add_argument("--threads", type=int, help="torch intra-op threads per family (default: torch's; "
                   "--compare: 1, for both libraries)")
    p.add_argument("--in-process", action="store_true",
                   help="train in this process (faster start; peak RSS is then the running peak)")
    p.add_argument("--compare", choices=("implicit",),
                   help="instead of every family: mf_bpr and ials against implicit's BPR and ALS "
                   "(same split, factors, epochs, threads; needs `pip install implicit`)")
    p.add_argument("--repeat", type=int, default=1,
                   help="--compare: time each fit R times, interleaved, and keep the fastest")
    p.add_argument("--json", dest="json_out", help="write the results here")
    p.set_defaults(func=_bench_train)

    p = bench.add_parser("nightly", help="fit a family and score every user of a synthetic catalog "
                         "with the product's engine: does it fit the nightly window?")
    p.add_argument("--model", default=None, help="family (default: score.model of the config)")
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--events", type=int, default=5_000_000)
    p.add_argument("--epochs", type=int, help="override the family's epochs")
    p.add_argument("--candidate-epochs", type=int, help="override the candidates model's epochs")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", default="auto", help="torch threads: auto (train.threads) or N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. score.top_n=100")
    p.add_argument("--json", dest="json_out", help="write the results here")
    p.set_defaults(func=_bench_nightly)


def _clean(args: argparse.Namespace) -> int:
    from recsys.bench.clean import run_bench

    run_bench(args.events, args.workdir, master=args.master, bad_row_rate=args.bad_row_rate,
              json_out=args.json)
    return 0


def _scoring(args: argparse.Namespace) -> int:
    from recsys.bench.scoring import main

    return main(args)


def _foldin(args: argparse.Namespace) -> int:
    from recsys.bench.foldin import main

    logging.basicConfig(level=logging.WARNING)
    return main(args)


def _metrics(args: argparse.Namespace) -> int:
    from recsys.bench.metrics import time_metrics

    time_metrics(args.users, args.items, args.relevant, args.k, args.repeat)
    return 0


def _quality(args: argparse.Namespace) -> int:
    from recsys.bench.quality import markdown_table, run_quality_bench
    from recsys.device import choose_device
    from recsys.io import write_json

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    result = run_quality_bench(args.data, k=args.k, seed=args.seed, models=models,
                               device=choose_device(args.device), protocol=args.protocol)
    print(markdown_table(result, args.k))
    if args.json_out:
        write_json(result, args.json_out)
    return 1 if any(r.get("error") for r in result["models"]) else 0


def _bench_train(args: argparse.Namespace) -> int:
    from recsys.bench.train import load_interactions, markdown_table, run_train_bench
    from recsys.device import choose_device
    from recsys.io import write_json
    from recsys.models.registry import model_names

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    families = ([m.strip() for m in args.models.split(",") if m.strip()] if args.models
                else model_names())
    shape = tuple(int(x) for x in args.shape.lower().split("x"))
    if len(shape) != 3:
        raise SystemExit(f"--shape must be USERSxITEMSxRATINGS, got {args.shape!r}")
    data, description = load_interactions(args.data, seed=args.seed, shape=shape)
    if args.compare == "implicit":
        from recsys.bench.train import compare_implicit, compare_table

        result = compare_implicit(data, threads=args.threads or 1, seed=args.seed,
                                  epochs=args.epochs, repeat=args.repeat, description=description)
        print(compare_table(result))
        if args.json_out:
            write_json(result, args.json_out)
        return 0
    result = run_train_bench(data, families, device=str(choose_device(args.device)),
                             seed=args.seed, epochs=args.epochs, isolate=not args.in_process,
                             timeout=args.timeout, description=description,
                             threads=args.threads)
    print(markdown_table(result))
    if args.json_out:
        write_json(result, args.json_out)
    return 1 if any(r.get("error") for r in result["families"]) else 0


def _bench_nightly(args: argparse.Namespace) -> int:
    from jobs._common import parse_set
    from recsys.bench.nightly import report, run_nightly_bench
    from recsys.config import load_config
    from recsys.device import choose_device, configure_threads
    from recsys.io import write_json

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = load_config(overrides=parse_set(args.set))
    configure_threads(args.threads if args.threads == "auto" else int(args.threads))
    result = run_nightly_bench(cfg, args.model or cfg.score.model, args.users, args.items,
                               args.events, choose_device(args.device), seed=args.seed,
                               epochs=args.epochs, candidate_epochs=args.candidate_epochs)
    print(report(result))
    if args.json_out:
        write_json(result, args.json_out)
    return 0
