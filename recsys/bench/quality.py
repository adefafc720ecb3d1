"""The quality benchmark: every registered model, default config, the reference protocol.

Import a MovieLens folder or a delimited ratings file, split per user (75/25, seed 42; every
rating is a positive), train each model on train, recommend the top k unseen items to every test
user, and report precision/recall/NDCG/MAP@k, plus the mean RMSE over the official folds
u1..u5 for models that predict ratings (the stratified test split when there are no folds).

``protocol="sampled"`` runs the NCF paper's protocol instead (each user's last interaction held
out, ranked among 99 sampled negatives, HR@k and NDCG@k), only to compare with numbers published
that way: sampled metrics overstate quality and can reorder models.
"""
from __future__ import annotations

import dataclasses
import logging
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from recsys import metrics as M
from recsys.bench._features import side_features
from recsys.evaluate.protocol import (
    evaluate_recommendations,
    predicts_ratings,
    recommend_users,
    sampled_protocol,
)
from recsys.interactions import Interactions, leave_last_k_out, stratified_split
from recsys.models.base import FitOptions

log = logging.getLogger(__name__)

# Header names a delimited file may use for each contract column (first match wins).
HEADER_ALIASES = {
    "user_id": ("user_id", "user", "userid", "uid", "customer_id"),
    "item_id": ("item_id", "item", "itemid", "movieid", "iid", "product_id"),
    "rating": ("rating", "score", "value"),
    "ts": ("ts", "timestamp", "time", "datetime"),
}
FOLDS = tuple(f"u{i}" for i in range(1, 6))
PROTOCOLS = ("reference", "sampled")
SAMPLED_NEGATIVES = 99  # as in the NCF paper (He et al. 2017)


@dataclasses.dataclass(frozen=True)
class BenchData:
    """The imported data in one dense index space, and the official folds where they exist."""

    data: Interactions
    user_ids: np.ndarray
    item_ids: np.ndarray
    folds: tuple[tuple[Interactions, Interactions], ...] = ()


def _delimited_columns(path: Path) -> dict[str, str]:
    header = pd.read_csv(path, sep=None, engine="python", nrows=0).columns
    lower = {c.strip().lower(): c for c in header}
    mapping = {}
    for key, aliases in HEADER_ALIASES.items():
        found = next((lower[a] for a in aliases if a in lower), None)
        if found is not None:
            mapping[key] = found
    return mapping


def read_ratings(path: Path | str) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    """``(ratings, items, users)`` from a MovieLens folder or a delimited file with a header."""
    from recsys.data.importers import read_delimited, read_movielens

    path = Path(path)
    if path.is_dir():
        return read_movielens(path)
    return read_delimited(path, _delimited_columns(path))


def _interactions(ratings: pd.DataFrame, user_index: pd.Index, item_index: pd.Index,
                  features: tuple[np.ndarray | None, np.ndarray | None]) -> Interactions:
    ts = ratings["ts"]
    return Interactions(
        user_idx=user_index.get_indexer(ratings["user_id"].astype(str)).astype(np.int64),
        item_idx=item_index.get_indexer(ratings["item_id"].astype(str)).astype(np.int64),
        # The reference protocol: every rating is a positive interaction of weight 1.
        weight=np.ones(len(ratings), np.float32),
        n_users=len(user_index),
        n_items=len(item_index),
        rating=ratings["rating"].to_numpy(np.float32),
        ts=None if ts.isna().all() else ts.to_numpy(dtype="int64", na_value=0),
        user_features=features[0],
        item_features=features[1],
    )


def _read_fold(file: Path) -> pd.DataFrame:
    raw = pd.read_csv(file, sep="\t", header=None, names=["user_id", "item_id", "rating", "ts"],
                      dtype={"user_id": str, "item_id": str})
    raw["ts"] = raw["ts"].astype("Int64")
    return raw


def load_bench_data(path: Path | str) -> BenchData:
    """Import ``path`` into dense indices (file order kept, so the split matches Recommenders')."""
    path = Path(path)
    ratings, items, users = read_ratings(path)
    ratings = ratings.dropna(subset=["rating"]).reset_index(drop=True)
    user_index = pd.Index(pd.unique(ratings["user_id"].astype(str)))
    item_index = pd.Index(pd.unique(ratings["item_id"].astype(str)))
    features = (side_features(users, "user_id", user_index.to_numpy()),
                side_features(items, "item_id", item_index.to_numpy()))
    data = _interactions(ratings, user_index, item_index, features)
    folds = []
    if path.is_dir() and all((path / f"{f}.base").is_file() for f in FOLDS):
        for f in FOLDS:
            base, test = (_read_fold(path / f"{f}.{part}") for part in ("base", "test"))
            folds.append((_interactions(base, user_index, item_index, features),
                          _interactions(test, user_index, item_index, features)))
    return BenchData(data, user_index.to_numpy(), item_index.to_numpy(), tuple(folds))


def _fit(name: str, params: dict[str, Any], train: Interactions, options: FitOptions):
    from recsys.models.registry import build_model

    model = build_model(name, params)
    t0 = time.perf_counter()
    model.fit(train, options)
    return model, time.perf_counter() - t0


def _predict_clipped(model, test: Interactions, lo: float, hi: float) -> np.ndarray:
    # Clip to the rating scale, as Surprise does before computing its published RMSEs.
    return np.clip(model.score(test.user_idx, test.item_idx), lo, hi)


def rating_rmse(name: str, params: dict[str, Any], bench: BenchData,
                train: Interactions, test: Interactions, options: FitOptions) -> list[float]:
    """RMSE on each official fold, or on (train, test) when there are none; report the mean."""
    pairs = bench.folds or ((train, test),)
    lo, hi = float(np.nanmin(bench.data.rating)), float(np.nanmax(bench.data.rating))
    errors = []
    for fold_train, fold_test in pairs:
        model, _ = _fit(name, params, fold_train, options)
        errors.append(M.rmse(fold_test.rating, _predict_clipped(model, fold_test, lo, hi)))
    return errors


def bench_model(name: str, params: dict[str, Any], bench: BenchData, train: Interactions,
                test: Interactions, k: int, options: FitOptions) -> dict[str, Any]:
    """Train ``name`` on ``train``, evaluate on ``test``; one row of the benchmark."""
    model, train_seconds = _fit(name, params, train, options)
    users = np.unique(test.user_idx)
    t0 = time.perf_counter()
    recommended = recommend_users(model, users, k)
    recommend_seconds = time.perf_counter() - t0
    metrics = evaluate_recommendations(recommended, users, train, test, k)
    row: dict[str, Any] = {"name": name}
    row.update({f"{m}@{k}": metrics[f"{m}@{k}"] for m in ("precision", "recall", "ndcg", "map")})
    folds = rating_rmse(name, params, bench, train, test, options) if predicts_ratings(model) else None
    row["rmse"] = None if folds is None else float(np.mean(folds))
    row["rmse_folds"] = folds
    row["train_seconds"] = train_seconds
    row["recommend_seconds"] = recommend_seconds
    row.update({key: metrics[key] for key in (f"hit_rate@{k}", f"mrr@{k}", f"coverage@{k}",
                                              f"novelty@{k}", f"arp@{k}")})
    return row


def bench_model_sampled(name: str, params: dict[str, Any], train: Interactions,
                        test: Interactions, k: int, options: FitOptions,
                        n_neg: int = SAMPLED_NEGATIVES) -> dict[str, Any]:
    """Train ``name`` on ``train``; HR@k and NDCG@k of each held-out item among sampled negatives."""
    model, train_seconds = _fit(name, params, train, options)
    t0 = time.perf_counter()
    metrics = sampled_protocol(model, train, test, k=k, n_neg=n_neg, seed=options.seed)
    return {"name": name, f"hr@{k}": metrics[f"hr@{k}"], f"ndcg@{k}": metrics[f"ndcg@{k}"],
            "train_seconds": train_seconds, "recommend_seconds": time.perf_counter() - t0}


def run_quality_bench(
    data_path: Path | str,
    k: int = 10,
    seed: int = 42,
    models: list[str] | None = None,
    device: torch.device = torch.device("cpu"),
    config=None,
    protocol: str = "reference",
) -> dict[str, Any]:
    """Run the benchmark and return the JSON document (``{"models": [...], ...}``).

    ``protocol`` is ``"reference"`` (per-user stratified split, full ranking, RMSE on the folds)
    or ``"sampled"`` (leave the last interaction out, 99 sampled negatives). A model that fails
    is reported with ``"error"`` and null metrics; the others still run.
    """
    from recsys.config import load_config
    from recsys.models.registry import model_names

    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}; got {protocol!r}")
    config = config or load_config()
    names = models or model_names()
    bench = load_bench_data(data_path)
    if protocol == "sampled":
        train, test = leave_last_k_out(bench.data, k=1, seed=seed)
    else:
        train, test = stratified_split(bench.data, ratio=0.75, seed=seed)
    options = FitOptions(device=device, seed=seed)
    rows = []
    for name in names:
        log.info("bench quality (%s): %s", protocol, name)
        try:
            params = config.model_params(name)
            rows.append(bench_model_sampled(name, params, train, test, k, options)
                        if protocol == "sampled" else
                        bench_model(name, params, bench, train, test, k, options))
        except Exception as exc:  # one broken family must not hide the others' figures
            log.exception("model %s failed", name)
            rows.append(_failed_row(name, k, exc))
    described = (
        {"name": "sampled", "split": "leave last 1 out per user", "negatives": SAMPLED_NEGATIVES,
         "seed": seed, "k": k}
        if protocol == "sampled" else
        {"name": "reference", "split": "stratified per user", "ratio": 0.75, "seed": seed, "k": k,
         "rmse": "official folds u1..u5" if bench.folds else "stratified test split"})
    return {
        "models": rows,
        "dataset": str(data_path),
        "protocol": described,
        "data": {"users": bench.data.n_users, "items": bench.data.n_items,
                 "ratings": len(bench.data), "train": len(train), "test": len(test)},
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch_threads": torch.get_num_threads(), "device": str(device)},
    }


def _failed_row(name: str, k: int, exc: Exception) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name}
    row.update({f"{m}@{k}": None for m in ("precision", "recall", "ndcg", "map")})
    row.update({"rmse": None, "train_seconds": None, "recommend_seconds": None,
                "error": f"{type(exc).__name__}: {exc}"})
    return row


def _fmt(value: Any, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _sampled_table(result: dict[str, Any], k: int) -> str:
    lines = [f"| model | HR@{k} (sampled) | NDCG@{k} (sampled) | train s |", "|---|---:|---:|---:|"]
    for r in sorted(result["models"], key=lambda r: -(r.get(f"ndcg@{k}") or -1.0)):
        if r.get("error"):
            lines.append(f"| {r['name']} | failed: {r['error'][:60]} | | |")
        else:
            lines.append(f"| {r['name']} | {_fmt(r[f'hr@{k}'])} | {_fmt(r[f'ndcg@{k}'])} | "
                         f"{_fmt(r['train_seconds'], 1)} |")
    return "\n".join(lines)


def markdown_table(result: dict[str, Any], k: int = 10) -> str:
    """The benchmark as a markdown table, best NDCG first."""
    if result.get("protocol", {}).get("name") == "sampled":
        return _sampled_table(result, k)
    head = (f"| model | P@{k} | R@{k} | NDCG@{k} | MAP@{k} | RMSE | train s | recommend s |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = sorted(result["models"], key=lambda r: -(r.get(f"ndcg@{k}") or -1.0))
    lines = [head]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['name']} | failed: {r['error'][:60]} | | | | | | |")
            continue
        lines.append(
            f"| {r['name']} | {_fmt(r[f'precision@{k}'])} | {_fmt(r[f'recall@{k}'])} | "
            f"{_fmt(r[f'ndcg@{k}'])} | {_fmt(r[f'map@{k}'])} | {_fmt(r['rmse'])} | "
            f"{_fmt(r['train_seconds'], 1)} | {_fmt(r['recommend_seconds'], 2)} |")
    return "\n".join(lines)
