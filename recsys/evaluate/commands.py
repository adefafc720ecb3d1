"""``recsys bench quality`` (the model quality benchmark, see :mod:`recsys.evaluate.benchmark`) and
``recsys bench metrics`` (the speed of the vectorized ranking metrics)."""
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
    p.add_argument("--protocol", choices=("reference", "sampled"), default="reference",
                   help="reference: per-user 75/25 split, full ranking (default); sampled: last "
                   "interaction held out among 99 sampled negatives (NCF paper), for comparison only")
    p.set_defaults(func=_quality)

    m = bench_sub.add_parser("metrics", help="time the ranking metrics on random top-k lists")
    m.add_argument("--users", type=int, default=6000)
    m.add_argument("--items", type=int, default=4000)
    m.add_argument("--relevant", type=int, default=40, help="held-out items per user")
    m.add_argument("--k", type=int, default=10)
    m.add_argument("--repeat", type=int, default=3)
    m.set_defaults(func=_metrics)


def _metrics(args: argparse.Namespace) -> int:
    """Time :func:`recsys.evaluate.metrics.ranking_metrics` (best of ``--repeat``) and print it."""
    import time

    import numpy as np
    import scipy.sparse as sp

    from recsys.evaluate.metrics import ranking_metrics

    rng = np.random.default_rng(0)
    recs = rng.integers(0, args.items, size=(args.users, args.k))
    indptr = np.arange(0, args.users * args.relevant + 1, args.relevant)
    relevant = sp.csr_matrix((np.ones(args.users * args.relevant),
                              rng.integers(0, args.items, args.users * args.relevant), indptr),
                             shape=(args.users, args.items))
    best = float("inf")
    for _ in range(max(1, args.repeat)):
        t0 = time.perf_counter()
        ranking_metrics(recs, relevant, args.k)
        best = min(best, time.perf_counter() - t0)
    print(f"ranking metrics @{args.k}: {args.users} users x {args.items} items, "
          f"{args.relevant} held-out items each: {best:.3f} s (best of {args.repeat})")
    return 0


def _quality(args: argparse.Namespace) -> int:
    from recsys.evaluate.benchmark import markdown_table, run_quality_bench
    from recsys.io import write_json
    from recsys.train.device import choose_device

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    result = run_quality_bench(args.data, k=args.k, seed=args.seed, models=models,
                               device=choose_device(args.device), protocol=args.protocol)
    print(markdown_table(result, args.k))
    if args.json_out:
        write_json(result, args.json_out)
    return 1 if any(r.get("error") for r in result["models"]) else 0
