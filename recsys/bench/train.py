"""``recsys bench train``: how fast every model family trains on MovieLens-100K-sized data.

Each family trains with its default config (conf/models/<family>.yaml) on the whole data set, in
a fresh spawned process of its own, so its peak RSS is its own and a family that hangs can be cut
off without losing the others' figures. Families with an epoch loop report the loop's
``samples_per_second`` (the median over epochs: the machine may be shared, and one slow epoch
should not decide the figure); closed-form families report interaction rows per second of fit.

Data: a MovieLens folder (``--data``), or, without one, a seeded synthetic matrix of the same
shape (943 users, 1,682 items, 100,000 ratings, taste clusters, power-law popularity, ratings and
side features), so the benchmark runs anywhere without the licensed data set.
"""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import platform
import queue
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys.bench.measure import max_rss_mb
from recsys.interactions import Interactions
from recsys.models.base import FitOptions

log = logging.getLogger(__name__)

ML100K_SHAPE = (943, 1682, 100_000)  # users, items, ratings


def synthetic_interactions(n_users: int = ML100K_SHAPE[0], n_items: int = ML100K_SHAPE[1],
                           n_ratings: int = ML100K_SHAPE[2], seed: int = 0,
                           clusters: int = 18) -> Interactions:
    """A MovieLens-like matrix: users rate mostly their taste cluster's items, popular ones first.

    (user, item) pairs are unique, ratings are 1..5 (higher inside the user's cluster), ts grow
    with the row order, and both sides carry one-hot cluster features (items also a few noisy
    "genre" columns), as the hybrid models expect.
    """
    if n_ratings > n_users * n_items // 2:
        raise ValueError(f"{n_ratings} ratings do not fit sparsely in {n_users}x{n_items}")
    rng = np.random.default_rng(seed)
    item_cluster = rng.integers(0, clusters, n_items)
    user_cluster = rng.integers(0, clusters, n_users)
    popularity = 1.0 / (1.0 + rng.permutation(n_items)) ** 0.9
    activity = rng.lognormal(0.0, 1.0, n_users)
    affinity = np.where(item_cluster[None, :] == np.arange(clusters)[:, None], 12.0, 1.0)
    item_p = popularity * affinity
    item_p /= item_p.sum(1, keepdims=True)
    keys = np.empty(0, np.int64)
    while len(keys) < n_ratings:  # heavy users repeat pairs: draw more until enough are unique
        users = rng.choice(n_users, n_ratings, p=activity / activity.sum())
        items = np.empty(n_ratings, np.int64)
        for c in range(clusters):  # one item distribution per taste cluster
            rows = np.flatnonzero(user_cluster[users] == c)
            items[rows] = rng.choice(n_items, len(rows), p=item_p[c])
        fresh = users * n_items + items
        keys = np.concatenate([keys, fresh])
        keys = keys[np.sort(np.unique(keys, return_index=True)[1])]  # first draws stay first
        activity = np.maximum(activity * 0.5, activity.mean() * 0.1)  # flatten: saturated users
    keys = keys[:n_ratings]
    users, items = keys // n_items, keys % n_items
    liked = item_cluster[items] == user_cluster[users]
    rating = np.clip(np.round(rng.normal(np.where(liked, 4.0, 2.8), 0.9)), 1, 5).astype(np.float32)
    onehot = np.eye(clusters, dtype=np.float32)
    genres = (rng.random((n_items, 8)) < 0.15).astype(np.float32)
    return Interactions(
        user_idx=users, item_idx=items, weight=np.ones(len(users), np.float32),
        n_users=n_users, n_items=n_items, rating=rating,
        ts=(880_000_000 + np.arange(len(users)) * 60).astype(np.int64),
        user_features=onehot[user_cluster],
        item_features=np.hstack([onehot[item_cluster], genres]))


def load_interactions(data: str | Path | None, seed: int = 0,
                      shape: tuple[int, int, int] = ML100K_SHAPE) -> tuple[Interactions, str]:
    """``(interactions, description)`` from a MovieLens folder, or, when ``data`` is None,
    synthetic of ``shape`` (users, items, ratings)."""
    if data is None:
        synthetic = synthetic_interactions(*shape, seed=seed)
        return synthetic, f"synthetic {shape[0]}x{shape[1]}, {len(synthetic)} ratings"
    from recsys.bench.quality import load_bench_data

    return load_bench_data(data).data, str(data)


def train_family(name: str, params: dict[str, Any], data: Interactions, device: str = "cpu",
                 seed: int = 42, epochs: int | None = None) -> dict[str, Any]:
    """Fit one family on ``data`` in this process and return its benchmark row.

    ``peak_rss_mb`` is this process's peak so far: meaningful when the process ran nothing else
    (:func:`run_train_bench` gives every family a fresh one).
    """
    from recsys.models.registry import build_model

    history: list[dict[str, float]] = []
    options = FitOptions(device=torch.device(device), seed=seed, epochs=epochs,
                         on_epoch=lambda _epoch, metrics: history.append(dict(metrics)))
    model = build_model(name, params)
    t0 = time.perf_counter()
    model.fit(data, options)
    wall = time.perf_counter() - t0
    per_epoch = [m["samples_per_second"] for m in history if "samples_per_second" in m]
    return {
        "family": name, "device": str(device),
        # A Gibbs "epoch" reports all its sweeps at once.
        "epochs": int(sum(m.get("sweeps", 1) for m in history)) if history else None,
        "samples_per_s": statistics.median(per_epoch) if per_epoch else len(data) / wall,
        "throughput": "loop samples/s" if per_epoch else "fit rows/s",
        "wall_s": wall, "peak_rss_mb": max_rss_mb(), "torch_threads": torch.get_num_threads(),
    }


def _worker(out: "mp.Queue", threads: int | None, *args: Any) -> None:
    try:
        if threads:
            torch.set_num_threads(threads)
        out.put(train_family(*args))
    except BaseException as exc:  # reported as the family's row; the parent carries on
        out.put({"family": args[0], "error": f"{type(exc).__name__}: {exc}"})


def _isolated(name: str, params: dict[str, Any], data: Interactions, device: str, seed: int,
              epochs: int | None, timeout: float | None, threads: int | None) -> dict[str, Any]:
    """:func:`train_family` in a fresh spawned process (own RSS), killed after ``timeout`` s."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(out, threads, name, params, data, device, seed, epochs))
    t0 = time.perf_counter()
    proc.start()
    try:
        while True:  # poll, so that a worker killed outright (OOM) is noticed at once
            try:
                return out.get(timeout=1.0)
            except queue.Empty:
                if not proc.is_alive() and out.empty():
                    return {"family": name, "device": device,
                            "error": f"worker died (exit code {proc.exitcode})"}
                if timeout is not None and time.perf_counter() - t0 > timeout:
                    return {"family": name, "device": device,
                            "error": f"timed out after {time.perf_counter() - t0:.0f} s"}
    finally:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join()


def run_train_bench(data: Interactions, families: list[str], device: str = "cpu", seed: int = 42,
                    epochs: int | None = None, isolate: bool = True, timeout: float | None = None,
                    config=None, description: str = "", threads: int | None = None
                    ) -> dict[str, Any]:
    """Train every family in ``families`` and return the JSON document (``{"families": [...]}``).

    A family that fails or times out gets a row with ``error``; the others still run.
    ``threads`` sets torch's intra-op threads (on a loaded machine one thread can be faster:
    a parallel region waits for its slowest, descheduled, thread).
    """
    from recsys.config import load_config

    if threads and not isolate:
        torch.set_num_threads(threads)
    config = config or load_config()
    rows = []
    for name in families:
        log.info("bench train: %s", name)
        try:
            params = config.model_params(name)
            row = (_isolated(name, params, data, device, seed, epochs, timeout, threads) if isolate
                   else train_family(name, params, data, device, seed, epochs))
        except Exception as exc:  # one broken family must not hide the others' figures
            log.exception("family %s failed", name)
            row = {"family": name, "error": f"{type(exc).__name__}: {exc}"}
        row.setdefault("device", device)
        log.info("bench train row: %s", json.dumps(row))  # survives a run cut short
        rows.append(row)
    return {
        "families": rows,
        "data": {"source": description, "users": data.n_users, "items": data.n_items,
                 "rows": len(data)},
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch_threads": torch.get_num_threads(), "device": device},
    }


def _fmt(value: Any, digits: int) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def markdown_table(result: dict[str, Any]) -> str:
    """The benchmark as a markdown table, in the order the families ran."""
    lines = ["| family | device | epochs | train samples/s | wall s | peak RSS MB |",
             "|---|---|---:|---:|---:|---:|"]
    for r in result["families"]:
        if r.get("error"):
            lines.append(f"| {r['family']} | {r.get('device', '')} | failed: {r['error'][:70]} | | | |")
            continue
        rate = _fmt(r["samples_per_s"], 0) + ("" if r["throughput"] == "loop samples/s" else " (fit rows/s)")
        lines.append(f"| {r['family']} | {r['device']} | {r['epochs'] or '—'} | {rate} | "
                     f"{_fmt(r['wall_s'], 1)} | {_fmt(r['peak_rss_mb'], 0)} |")
    return "\n".join(lines)
