"""``recsys bench quality``: the model quality benchmark (see :mod:`recsys.evaluate.benchmark`)."""
from __future__ import annotations

import argparse
import logging


def register(sub, bench_sub) -> None:
    """Add ``bench quality`` to the ``recsys`` parser (``recsys evaluate`` lives in train/)."""
    p = bench_sub.add_parser("quality", help="train every model, full-ranking metrics on a split")
    p.add_argument("--data", required=True,
                   help="MovieLens folder (100K, 1M, latest) or delimited ratings file with header")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", dest="json_out", help="write the results here")
    p.add_argument("--models", help="comma-separated families (default: every registered one)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    p.set_defaults(func=_quality)


def _quality(args: argparse.Namespace) -> int:
    from recsys.evaluate.benchmark import markdown_table, run_quality_bench, write_json
    from recsys.train.device import choose_device

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    result = run_quality_bench(args.data, k=args.k, seed=args.seed, models=models,
                               device=choose_device(args.device))
    print(markdown_table(result, args.k))
    if args.json_out:
        write_json(result, args.json_out)
    return 1 if any(r.get("error") for r in result["models"]) else 0
