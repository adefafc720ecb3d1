"""Data-parallel training benchmark: one family (mf_bpr by default) at N processes.

    torchrun --standalone --nproc-per-node N -m recsys.bench.ddp [--data ../shared/datasets/ml-100k]
             [--family mf_bpr] [--epochs E] [--json out.json]

Every rank loads the same data (a MovieLens folder, or the seeded synthetic matrix of
MovieLens-100K's shape from :mod:`recsys.bench.train`), carves the same seeded validation split
(10% of each user's rows) and trains on its shard through DDP (:mod:`recsys.distributed`; gloo on
CPU); rank 0 validates every epoch and prints one JSON row: median samples/s over epochs (all
ranks' samples), validation NDCG@10 (last and best), wall seconds. Without torchrun it is N=1.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from recsys import distributed
from recsys.bench.train import load_interactions
from recsys.interactions import validation_split
from recsys.models.base import FitOptions


def run(data: str | None, family: str = "mf_bpr", epochs: int | None = None, seed: int = 42,
        device: str = "cpu") -> dict | None:
    """Train ``family`` as this rank; rank 0's result row (None on the other ranks)."""
    from recsys.model_params import validate_params
    from recsys.models.registry import build_model

    interactions, source = load_interactions(data, seed=0)
    fit, val = validation_split(interactions, 0.1, seed=seed)
    history: list[dict[str, float]] = []
    options = FitOptions(device=distributed.rank_device(device), seed=seed, epochs=epochs,
                         validation=val, on_epoch=lambda _e, m: history.append(dict(m)))
    params = validate_params(family, None)
    model = build_model(family, params)
    t0 = time.perf_counter()
    model.fit(fit, options)
    wall = time.perf_counter() - t0
    if not distributed.is_main():
        return None
    ndcg = [h["val_ndcg@10"] for h in history]
    return {
        "family": family, "processes": distributed.world_size(), "data": source,
        "train_rows": len(fit), "validation_rows": len(val), "epochs": len(history),
        "batch_size_global": getattr(params, "batch_size", None),
        "samples_per_s": statistics.median(h["samples_per_second"] for h in history),
        "val_ndcg@10_last": ndcg[-1], "val_ndcg@10_best": max(ndcg), "wall_s": wall,
        "torch_threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="MovieLens folder (default: synthetic ML-100K shape)")
    p.add_argument("--family", default="mf_bpr")
    p.add_argument("--epochs", type=int, default=None, help="default: the family's config")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, default=None, help="also write rank 0's row here")
    args = p.parse_args(argv)
    with distributed.process_group():
        row = run(args.data, args.family, args.epochs, args.seed, args.device)
    if row is not None:
        print(json.dumps(row))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
