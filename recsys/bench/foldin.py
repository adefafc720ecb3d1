"""`recsys bench foldin`: new users served tonight, fold-in vs the popularity fallback.

Whole users are held out of training (``--holdout`` of them, seeded): the model is trained on the
others, as if the held-out users' first events had arrived after the training day. Each held-out
user's first half of events (by timestamp; file order when there is none) is their history in the
day's training set, the rest is their test. The scoring engine then scores the day twice, with
the production code path (:func:`recsys.score.engine.write_topn`): once with fold-in (``source =
fold_in``) and once without (``source = popular``, the cold-start fallback); NDCG@k and recall@k
are computed over the held-out users' lists against their test items.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import time
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from recsys import metrics as M
from recsys.config import ScoreConfig
from recsys.interactions import Interactions
from recsys.models.base import FitOptions
from recsys.score._sink import Provenance
from recsys.score.engine import write_topn


class _Day:
    """The day's training set as the engine reads it (``ScoringData``)."""

    def __init__(self, interactions: Interactions, user_ids: np.ndarray, item_ids: np.ndarray) -> None:
        self.interactions, self.user_ids, self.item_ids = interactions, user_ids, item_ids
        self.item_available = None


def _subset(data: Interactions, rows: np.ndarray) -> Interactions:
    return Interactions(user_idx=data.user_idx[rows], item_idx=data.item_idx[rows],
                        weight=data.weight[rows], n_users=data.n_users, n_items=data.n_items)


def split_new_users(data: Interactions, share: float, seed: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(new users, training rows, the new users' history rows, their test rows): ``share`` of the
    users with at least 2 events held out whole; each one's first half of events is history."""
    rng = np.random.default_rng(seed)
    counts = np.bincount(data.user_idx, minlength=data.n_users)
    eligible = np.flatnonzero(counts >= 2)
    new = np.sort(rng.choice(eligible, max(1, int(round(share * len(eligible)))), replace=False))
    is_new = np.isin(data.user_idx, new)
    ts = data.ts if data.ts is not None else np.arange(len(data.user_idx))
    order = np.lexsort((np.arange(len(ts)), ts, data.user_idx))  # by user, then time
    rank = np.empty(len(order), np.int64)
    starts = np.cumsum(counts) - counts
    rank[order] = np.arange(len(order)) - starts[data.user_idx[order]]
    first_half = rank < (counts[data.user_idx] + 1) // 2
    return (new, np.flatnonzero(~is_new), np.flatnonzero(is_new & first_half),
            np.flatnonzero(is_new & ~first_half))


def _ndcg(table, new_ids: np.ndarray, item_index: dict, test: Interactions, new: np.ndarray, k: int
          ) -> dict[str, float]:
    df = table.to_pandas()
    df = df[df.user_id.isin(set(new_ids))]
    rec = np.full((len(new), k), -1, np.int64)
    pos = {u: i for i, u in enumerate(new_ids)}
    rows = df.user_id.map(pos).to_numpy()
    ranks = df["rank"].to_numpy() - 1
    keep = ranks < k
    rec[rows[keep], ranks[keep]] = df.item_id.map(item_index).to_numpy()[keep]
    relevant = test.csr("ones")[new]
    out = M.ranking_metrics(rec, relevant, k)
    return {"ndcg": out[f"ndcg@{k}"], "recall": out[f"recall@{k}"],
            "sources": df.groupby("source").user_id.nunique().to_dict()}


def run_foldin_bench(data_path: str, models: list[str], holdout: float = 0.1, k: int = 10,
                     seed: int = 42, config=None) -> dict[str, Any]:
    from recsys.bench.quality import load_bench_data
    from recsys.config import load_config
    from recsys.models.bundle import ModelBundle
    from recsys.models.registry import build_model

    config = config or load_config()
    bench = load_bench_data(data_path)
    data = bench.data
    new, train_rows, hist_rows, test_rows = split_new_users(data, holdout, seed)
    train, test = _subset(data, train_rows), _subset(data, test_rows)
    day = _Day(_subset(data, np.r_[train_rows, hist_rows]), bench.user_ids.astype(str),
               bench.item_ids.astype(str))
    # The model's user map: the held-out users are unknown to it (their ids never match).
    model_users = day.user_ids.copy().astype(object)
    model_users[new] = [f"__held_out_{u}" for u in new]
    new_ids = day.user_ids[new]
    item_index = {i: n for n, i in enumerate(day.item_ids)}
    prov = Provenance("bench_foldin", "0", "bench", dt.datetime.now(dt.timezone.utc))
    options = ScoreConfig(top_n=k, block_size=4096)
    rows = []
    for name in models:
        t0 = time.perf_counter()
        model = build_model(name, config.model_params(name)).fit(train, FitOptions(seed=seed))
        fit_s = time.perf_counter() - t0
        bundle = ModelBundle(model, model_users, day.item_ids.copy())
        row: dict[str, Any] = {"model": name, "train_seconds": round(fit_s, 1)}
        for fold_in, label in ((True, "fold_in"), (False, "popular")):
            with tempfile.TemporaryDirectory(prefix="bench-foldin-") as tmp:
                t0 = time.perf_counter()
                write_topn(bundle, day, prov, tmp, options, fold_in=fold_in)
                row[f"{label}_score_seconds"] = round(time.perf_counter() - t0, 2)
                got = _ndcg(pq.read_table(tmp), new_ids, item_index, test, new, k)
            row[f"{label}_ndcg@{k}"] = round(got["ndcg"], 4)
            row[f"{label}_recall@{k}"] = round(got["recall"], 4)
            row[f"{label}_sources"] = got["sources"]
        rows.append(row)
    return {"dataset": str(data_path), "users": data.n_users, "items": data.n_items,
            "held_out_users": len(new), "history_events": len(hist_rows), "test_events": len(test_rows),
            "holdout": holdout, "seed": seed, "k": k, "torch_threads": torch.get_num_threads(),
            "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()], "models": rows}


def markdown_table(result: dict[str, Any]) -> str:
    k = result["k"]
    lines = [f"| model | NDCG@{k} fold-in | NDCG@{k} popular | recall@{k} fold-in | recall@{k} popular |",
             "|---|---:|---:|---:|---:|"]
    for r in result["models"]:
        lines.append(f"| {r['model']} | {r[f'fold_in_ndcg@{k}']:.4f} | {r[f'popular_ndcg@{k}']:.4f} | "
                     f"{r[f'fold_in_recall@{k}']:.4f} | {r[f'popular_recall@{k}']:.4f} |")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    result = run_foldin_bench(args.data, models, args.holdout, args.k, args.seed)
    print(json.dumps({k: v for k, v in result.items() if k != "models"}))
    print(markdown_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0
