"""`recsys score`, `recsys publish`, `recsys score-pairs` and `recsys bench scoring`."""
from __future__ import annotations

import argparse
from pathlib import Path


def _score_pairs(args: argparse.Namespace) -> int:
    from recsys.score.pairs import read_pairs, score_pairs, write_scores
    from recsys.train.run import load_model_uri

    cfg = None
    if args.model_uri.startswith("models:/"):
        from recsys.config import load_config

        cfg = load_config(env=args.env)
    loaded = load_model_uri(args.model_uri, cfg)
    out = score_pairs(loaded.bundle, read_pairs(args.pairs))
    write_scores(out, args.out)
    print(f"scored {int(out['score'].notna().sum())} of {len(out)} pairs with "
          f"{loaded.name} v{loaded.version} -> {args.out}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from recsys.score.bench import main

    return main(args)


def register(sub, bench_sub) -> None:
    from recsys.cli import add_job_command

    add_job_command(sub, "score", "score", "score all users for a ds with the champion; stage the top-N table")
    add_job_command(sub, "publish", "publish", "validate the staged top-N table of a ds and publish it")

    p = sub.add_parser("score-pairs", help="score given (user, item) pairs with one model")
    p.add_argument("--model-uri", required=True,
                   help="a local model bundle folder, models:/NAME@ALIAS or models:/NAME/VERSION")
    p.add_argument("--pairs", type=Path, required=True,
                   help="CSV or Parquet with user_id,item_id (or user_idx,item_idx)")
    p.add_argument("--out", type=Path, required=True, help="output .csv or .parquet (pairs + score)")
    p.add_argument("--env", default=None, help="config environment for the MLflow registry")
    p.set_defaults(func=_score_pairs)

    b = bench_sub.add_parser("scoring", help="all-users top-k: this engine vs Spark ALS vs a bare loop")
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
    b.set_defaults(func=_bench)
