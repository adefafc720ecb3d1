"""`recsys bench scoring`: all-users top-k with this engine vs Spark ALS and a bare torch loop.

All three use the same random factors. The engine does the full job (ids, seen items masked,
Parquet written); the bare loop is only matrix product + top-k per block, the floor the engine is
measured against; Spark MLlib's ``ALSModel.recommendForAllUsers(k)`` (forced with a ``noop``
write) is the usual alternative. It masks nothing and writes nothing, which favours it.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from recsys.bench.measure import PeakRss, max_rss_mb
from recsys.config import ScoreConfig
from recsys.interactions import Interactions
from recsys.score._sink import Provenance
from recsys.score.engine import write_topn


class _Factors:
    """A fitted factorized model stand-in holding given vectors (what scoring reads)."""

    name, factorized = "bench_factors", True

    def __init__(self, users: np.ndarray, items: np.ndarray) -> None:
        self._u, self._i = users, items
        self.n_users, self.n_items = len(users), len(items)

    def user_vectors(self) -> np.ndarray:
        return self._u

    def item_vectors(self) -> np.ndarray:
        return self._i


@dataclasses.dataclass
class _Data:
    interactions: Interactions
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_available: np.ndarray | None = None


def make_problem(users: int, items: int, factors: int, seen: int, seed: int):
    """Random factors, ``seen`` random items per user, string ids: (bundle, data)."""
    from recsys.models.bundle import ModelBundle

    rng = np.random.default_rng(seed)
    u = (rng.standard_normal((users, factors), dtype=np.float32) / np.sqrt(factors)).astype(np.float32)
    v = rng.standard_normal((items, factors), dtype=np.float32)
    seen = min(seen, items)
    rows = np.repeat(np.arange(users, dtype=np.int64), seen)
    cols = rng.integers(0, items, users * seen)
    inter = Interactions(user_idx=rows, item_idx=cols, weight=np.ones(len(rows), np.float32),
                         n_users=users, n_items=items)
    user_ids = np.char.add("user", np.arange(users).astype(str)).astype(object)
    item_ids = np.char.add("item", np.arange(items).astype(str)).astype(object)
    bundle = ModelBundle(_Factors(u, v), user_ids, item_ids)
    return bundle, _Data(inter, user_ids, item_ids)


def time_engine(bundle, data, k: int, block_size: int, device: torch.device, out: Path) -> dict:
    prov = Provenance("bench", "0", "bench", dt.datetime.now(dt.timezone.utc))
    options = ScoreConfig(top_n=k, block_size=block_size)
    with PeakRss(interval=0.02, children=False) as mem:
        t0 = time.perf_counter()
        summary = write_topn(bundle, data, prov, out, options, device)
        seconds = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in out.glob("*.parquet"))
    return {"seconds": seconds, "rows": summary["rows"], "parquet_mb": size / 2**20,
            "rss_before_mb": mem.start_mb, "peak_rss_mb": mem.peak_mb}


def time_gemm_topk(u: np.ndarray, v: np.ndarray, k: int, block_size: int, device: torch.device) -> float:
    """The floor: per block, one matrix product and one top-k, results discarded."""
    ut = torch.from_numpy(u).to(device)
    vt = torch.from_numpy(np.ascontiguousarray(v.T)).to(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        for s in range(0, len(u), block_size):
            vals, idx = torch.topk(ut[s:s + block_size] @ vt, k, dim=1)
            idx.cpu()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def time_spark_als(u: np.ndarray, v: np.ndarray, k: int) -> float:
    """``ALSModel.recommendForAllUsers(k)`` on the given factors, forced with a noop write."""
    import pyarrow as pa
    from pyspark.ml.recommendation import ALSModel

    from recsys.config import SparkConfig
    from recsys.spark import get_spark

    spark = get_spark("bench-scoring", SparkConfig(conf={
        "spark.driver.memory": "6g", "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "8", "spark.sql.execution.arrow.pyspark.enabled": "true"}))

    def factors(m: np.ndarray):
        f = m.shape[1]
        t = pa.table({"id": pa.array(np.arange(len(m), dtype=np.int32)),
                      "features": pa.ListArray.from_arrays(
                          pa.array(np.arange(0, len(m) * f + 1, f, dtype=np.int32)), pa.array(m.ravel()))})
        df = spark.createDataFrame(t).cache()
        df.count()
        return df

    uf, vf = factors(u), factors(v)
    # ALSModel's constructor is private[ml] in Scala but public in bytecode: wrap our factors.
    jvm_model = spark._jvm.org.apache.spark.ml.recommendation.ALSModel(
        "als_bench", u.shape[1], uf._jdf, vf._jdf)
    # Defaults normally come from the ALS estimator that fitted the model; set them ourselves.
    jvm_model.setUserCol("user").setItemCol("item").setPredictionCol("prediction")
    jvm_model.setBlockSize(4096).setColdStartStrategy("nan")
    model = ALSModel(jvm_model)
    t0 = time.perf_counter()
    model.recommendForAllUsers(k).write.format("noop").mode("overwrite").save()
    return time.perf_counter() - t0


def run_bench(args: argparse.Namespace) -> dict:
    from recsys.device import choose_device

    device = choose_device(args.device)
    bundle, data = make_problem(args.users, args.items, args.factors, args.seen, args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        # Warm-up on a tiny problem: lazy imports (pandas via pyarrow) and first-call kernels
        # would otherwise be charged to the engine.
        tiny = make_problem(64, 256, args.factors, 2, args.seed)
        time_engine(*tiny, min(args.k, 256), args.block_size, device, Path(tmp) / "warmup")
        time_gemm_topk(tiny[0].model.user_vectors(), tiny[0].model.item_vectors(),
                       min(args.k, 256), args.block_size, device)
        u, v = bundle.model.user_vectors(), bundle.model.item_vectors()
        # Interleave the repeats so both see the same machine load; keep the best of each.
        engs, gemms = [], []
        for rep in range(args.repeat):
            engs.append(time_engine(bundle, data, args.k, args.block_size, device, Path(tmp) / str(rep)))
            gemms.append(time_gemm_topk(u, v, args.k, args.block_size, device))
    eng = min(engs, key=lambda e: e["seconds"])
    eng["peak_rss_mb"] = max(e["peak_rss_mb"] for e in engs)
    gemm = min(gemms)
    spark_s = None if args.skip_spark else time_spark_als(u, v, args.k)
    out = {
        "users": args.users, "items": args.items, "factors": args.factors, "k": args.k,
        "seen_per_user": args.seen, "block_size": args.block_size, "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "repeat": args.repeat, "seconds": round(eng["seconds"], 3),
        "scores_per_second": round(args.users * args.items / eng["seconds"]),
        "rows_written": eng["rows"], "parquet_mb": round(eng["parquet_mb"], 1),
        "rss_before_mb": round(eng["rss_before_mb"], 1), "peak_rss_mb": round(eng["peak_rss_mb"], 1),
        "max_rss_process_mb": round(max_rss_mb(), 1),
        "gemm_topk_seconds": round(gemm, 3),
        "ratio_vs_gemm_topk": round(eng["seconds"] / gemm, 3),
        "spark_als_seconds": None if spark_s is None else round(spark_s, 3),
        "ratio_vs_spark_als": None if spark_s is None else round(spark_s / eng["seconds"], 2),
    }
    return out


def main(args: argparse.Namespace) -> int:
    out = run_bench(args)
    width = max(map(len, out))
    for key, value in out.items():
        print(f"{key:<{width}}  {value}")
    print("ratio_vs_spark_als = Spark seconds / engine seconds (higher is better); "
          "ratio_vs_gemm_topk = engine seconds / bare loop seconds (1.0 is the floor)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
    return 0
