"""``recsys bench nightly``: does a family fit and score a large catalog in the nightly window?

The nightly default (``score.model``) must be accurate *and* finish at scale. This benchmark
builds a seeded synthetic catalog (``--users`` × ``--items``, ``--events`` interactions, taste
clusters and power-law popularity, with side features: :func:`recsys.bench.train.synthetic_interactions`),
fits the family with its default config, and scores every user with the product's own engine
(:func:`recsys.score.engine.write_topn`) into a temporary folder, as the score step does. A
non-factorized family on a catalog larger than ``score.full_scoring_max_items`` re-ranks the
candidates of ``score.candidates_model``, which is then fitted first, as in the nightly.

It prints, per stage (candidates fit, fit, score): seconds and the process's peak RSS, plus
users/s of the scoring stage.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys.bench.measure import max_rss_mb
from recsys.bench.train import synthetic_interactions
from recsys.config import Config
from recsys.data.training_set import TrainingSet
from recsys.models.base import FitOptions
from recsys.models.bundle import ModelBundle
from recsys.models.registry import build_model
from recsys.score.engine import Provenance, write_topn

log = logging.getLogger(__name__)


def _fit(cfg: Config, family: str, data, device: torch.device, seed: int, epochs: int | None):
    model = build_model(family, cfg.model(family))
    t0 = time.perf_counter()
    model.fit(data, FitOptions(device=device, seed=seed, epochs=epochs, progress=False))
    return model, time.perf_counter() - t0


def run_nightly_bench(cfg: Config, family: str, users: int, items: int, events: int,
                      device: torch.device, seed: int = 0, epochs: int | None = None,
                      candidate_epochs: int | None = None) -> dict[str, Any]:
    """Fit ``family`` (and its candidates model when the engine would re-rank) on a synthetic
    ``users`` × ``items`` catalog and score every user; returns the figures."""
    t0 = time.perf_counter()
    data = synthetic_interactions(users, items, events, seed=seed)
    user_ids = np.array([f"u{i}" for i in range(users)])
    item_ids = np.array([f"i{i}" for i in range(items)])
    stages: dict[str, dict[str, float]] = {"generate": {"seconds": time.perf_counter() - t0,
                                                        "peak_rss_mb": max_rss_mb()}}
    model, seconds = _fit(cfg, family, data, device, seed, epochs)
    stages["fit"] = {"seconds": seconds, "peak_rss_mb": max_rss_mb()}
    candidates = None
    reranked = not model.factorized and items > cfg.score.full_scoring_max_items
    if reranked:
        log.info("%s is not factorized and %d items > score.full_scoring_max_items=%d: fitting "
                 "the candidates model %s", family, items, cfg.score.full_scoring_max_items,
                 cfg.score.candidates_model)
        candidates, seconds = _fit(cfg, cfg.score.candidates_model, data, device, seed, candidate_epochs)
        stages["candidates_fit"] = {"seconds": seconds, "peak_rss_mb": max_rss_mb()}
    bundle = ModelBundle(model, user_ids, item_ids)
    prov = Provenance(f"bench_{family}", "0", "bench", dt.datetime.now(dt.timezone.utc))
    with tempfile.TemporaryDirectory(prefix="bench-nightly-") as tmp:
        t0 = time.perf_counter()
        day = TrainingSet(data, user_ids, item_ids, item_available=None, dq_summary=None,
                          path=Path("<synthetic>"))
        summary = write_topn(bundle, day, prov, Path(tmp), cfg.score,
                             device, candidates=candidates)
        seconds = time.perf_counter() - t0
    stages["score"] = {"seconds": seconds, "peak_rss_mb": max_rss_mb(),
                       "users_per_second": users / seconds}
    total = sum(s["seconds"] for k, s in stages.items() if k != "generate")
    return {
        "family": family, "users": users, "items": items, "events": int(len(data)),
        "top_n": cfg.score.top_n, "reranked_candidates_of": cfg.score.candidates_model if reranked else None,
        "candidates_m": cfg.score.candidates_m if reranked else None,
        "rows": summary["rows"], "stages": stages, "fit_and_score_seconds": total,
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "device": str(device), "platform": platform.platform(),
                    "load_average": os.getloadavg()},
    }


def report(result: dict[str, Any]) -> str:
    """A plain-text table of the stages."""
    head = (f"{result['family']}: {result['users']:,} users x {result['items']:,} items, "
            f"{result['events']:,} events, top-{result['top_n']}"
            + (f", re-ranking the top {result['candidates_m']} of {result['reranked_candidates_of']}"
               if result["reranked_candidates_of"] else ", every item scored"))
    lines = [head, f"{'stage':<16}{'seconds':>10}{'peak RSS MB':>14}"]
    for name, s in result["stages"].items():
        lines.append(f"{name:<16}{s['seconds']:>10.1f}{s['peak_rss_mb']:>14.0f}"
                     + (f"   {s['users_per_second']:,.0f} users/s" if "users_per_second" in s else ""))
    lines.append(f"fit + score: {result['fit_and_score_seconds']:.1f} s "
                 f"({result['machine']['torch_threads']} torch threads, "
                 f"load {result['machine']['load_average'][0]:.2f})")
    return "\n".join(lines)
