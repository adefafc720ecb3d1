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


# -- recsys bench train --compare implicit -----------------------------------------------------
# implicit's settings besides factors, iterations and threads (which follow ours): ALS with the
# regularization of the issue-13 anchor (0.458 NDCG@10 on ml-100k), BPR with implicit's defaults.
IMPLICIT_ALS = {"regularization": 10.0, "alpha": 1.0, "use_cg": True}  # CG: 3 steps
IMPLICIT_BPR = {"learning_rate": 0.01, "regularization": 0.01, "verify_negative_samples": True}
COMPARE_SPLIT = {"ratio": 0.75, "seed": 42}  # the reference protocol's per-user split


def _ndcg_from_vectors(user_vecs: np.ndarray, item_vecs: np.ndarray, train: Interactions,
                       test: Interactions, k: int) -> float:
    """NDCG@k of ``user_vecs . item_vecs`` on ``test``, train items excluded (as recommend does)."""
    from recsys import metrics
    from recsys.models.base import top_n

    users = np.unique(test.user_idx)
    seen = train.csr("ones")[users].tocoo()
    scores = torch.from_numpy(np.ascontiguousarray(user_vecs[users] @ item_vecs.T, np.float32))
    items, _ = top_n(scores, k, seen.row.astype(np.int64), seen.col.astype(np.int64))
    return float(metrics.ndcg_at_k(items, test.csr("ones")[users], k))


def _fit_ours(name: str, params: dict[str, Any], train: Interactions, seed: int
              ) -> tuple[Any, float]:
    from recsys.models.registry import build_model

    model = build_model(name, params)
    t0 = time.perf_counter()
    model.fit(train, FitOptions(device=torch.device("cpu"), seed=seed))
    return model, time.perf_counter() - t0


def _fit_implicit(kind: str, factors: int, iterations: int, threads: int, train: Interactions,
                  seed: int) -> tuple[Any, float]:
    """implicit's CPU ALS or BPR on the same user x item matrix (every row a positive of 1)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    from threadpoolctl import threadpool_limits

    cls, settings = ((AlternatingLeastSquares, IMPLICIT_ALS) if kind == "als"
                     else (BayesianPersonalizedRanking, IMPLICIT_BPR))
    model = cls(factors=factors, iterations=iterations, num_threads=threads, random_state=seed,
                **settings)
    matrix = train.csr("ones").astype(np.float32)
    with threadpool_limits(threads):  # implicit's BLAS calls too, not only its own loops
        t0 = time.perf_counter()
        model.fit(matrix, show_progress=False)
        seconds = time.perf_counter() - t0
    return model, seconds


def compare_implicit(data: Interactions, config=None, threads: int = 1, seed: int = 42,
                     epochs: int | None = None, repeat: int = 1, k: int = 10,
                     description: str = "") -> dict[str, Any]:
    """Train mf_bpr, implicit's BPR, ials and implicit's ALS on the same split, same factors,
    epochs and threads; time each fit (best of ``repeat``, runs interleaved) and score NDCG@k.

    Our models use their default configs (``conf/models``); implicit gets our factors and
    epochs and :data:`IMPLICIT_ALS` / :data:`IMPLICIT_BPR`. samples/s = epochs x train rows /
    fit seconds (whole ``fit``, set-up included, for both libraries); s/iteration = fit seconds /
    epochs. Ratios: ours over implicit's, computed from the rows of this run.
    """
    try:
        import implicit  # noqa: F401
    except ImportError as exc:
        raise RuntimeError("--compare implicit needs the benchmark-only dependency implicit: "
                           "pip install implicit (requirements-dev.txt)") from exc
    from recsys.config import load_config
    from recsys.interactions import stratified_split

    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    config = config or load_config()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        train, test = stratified_split(data, **COMPARE_SPLIT)
        rows = []
        for ours, kind, theirs in (("mf_bpr", "bpr", "implicit BPR"), ("ials", "als", "implicit ALS")):
            params = dict(config.model_params(ours))
            if epochs is not None:
                params["epochs"] = epochs
            n_epochs, factors = int(params["epochs"]), int(params["factors"])
            best: dict[str, tuple[Any, float]] = {}
            for _ in range(repeat):  # interleaved: a burst of load hits both sides alike
                for label, fit in ((ours, lambda: _fit_ours(ours, params, train, seed)),
                                   (theirs, lambda: _fit_implicit(kind, factors, n_epochs,
                                                                  threads, train, seed))):
                    model, seconds = fit()
                    if label not in best or seconds < best[label][1]:
                        best[label] = (model, seconds)
            for label in (ours, theirs):
                model, seconds = best[label]
                if label == ours:
                    vectors = (model.user_vectors(), model.item_vectors())
                else:
                    vectors = (np.asarray(model.user_factors), np.asarray(model.item_factors))
                rows.append({
                    "model": label, "library": "recsys" if label == ours else "implicit",
                    "kind": kind, "factors": factors, "epochs": n_epochs, "threads": threads,
                    "train_s": seconds, "samples_per_s": n_epochs * len(train) / seconds,
                    "s_per_iteration": seconds / n_epochs,
                    f"ndcg@{k}": _ndcg_from_vectors(*vectors, train, test, k),
                })
    finally:
        torch.set_num_threads(previous_threads)
    by_model = {r["model"]: r for r in rows}
    ratios = []
    for ours, theirs, speed, goal in (
            ("mf_bpr", "implicit BPR", "samples_per_s", ">= 0.5"),
            ("ials", "implicit ALS", "s_per_iteration", "<= 2")):
        a, b = by_model[ours], by_model[theirs]
        ratios.append({"ours": ours, "theirs": theirs, "speed_metric": speed,
                       "speed_ratio": a[speed] / b[speed], "speed_goal": goal,
                       f"ndcg@{k}_ratio": a[f"ndcg@{k}"] / b[f"ndcg@{k}"] if b[f"ndcg@{k}"] else None,
                       f"ndcg@{k}_diff": a[f"ndcg@{k}"] - b[f"ndcg@{k}"]})
    import implicit as _implicit

    return {
        "rows": rows, "ratios": ratios, "k": k, "repeat": repeat,
        "split": dict(COMPARE_SPLIT, train_rows=len(train), test_rows=len(test)),
        "data": {"source": description, "users": data.n_users, "items": data.n_items,
                 "rows": len(data)},
        "implicit": {"version": _implicit.__version__, "als": IMPLICIT_ALS, "bpr": IMPLICIT_BPR},
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "threads": threads},
    }


def compare_table(result: dict[str, Any]) -> str:
    """The comparison as two markdown tables: the four fits, then ours over implicit's."""
    k = result["k"]
    lines = [f"| model | library | factors | epochs | threads | train s | samples/s | s/iteration "
             f"| NDCG@{k} |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {r['library']} | {r['factors']} | {r['epochs']} | "
                     f"{r['threads']} | {r['train_s']:.3f} | {r['samples_per_s']:,.0f} | "
                     f"{r['s_per_iteration'] * 1000:.1f} ms | {r[f'ndcg@{k}']:.4f} |")
    lines += ["", f"| ours vs implicit | speed | ratio (ours / implicit) | goal | NDCG@{k} ours − "
              "implicit |", "|---|---|---:|---|---:|"]
    for r in result["ratios"]:
        speed = "samples/s" if r["speed_metric"] == "samples_per_s" else "s/iteration"
        lines.append(f"| {r['ours']} vs {r['theirs']} | {speed} | {r['speed_ratio']:.2f} | "
                     f"{r['speed_goal']} | {r[f'ndcg@{k}_diff']:+.4f} |")
    return "\n".join(lines)
