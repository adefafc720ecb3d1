"""`recsys bench scoring`: all-users top-k with this engine vs Spark ALS and a bare torch loop;
with ``--engine spark``, the distributed scorer from warehouse inputs (users/s, driver memory).

All three use the same random factors. The engine does the full job (ids, seen items masked,
Parquet written, ``because`` computed); the bare loop is only matrix product + top-k per block, the
floor the engine is measured against. The engine also runs without ``because`` (the same job with
the reasons left out), so ``because_overhead`` = seconds with / seconds without; Spark MLlib's ``ALSModel.recommendForAllUsers(k)`` (forced with a ``noop``
write) is the usual alternative. It masks nothing and writes nothing, which favours it.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import tempfile
import threading
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


def time_engine(bundle, data, k: int, block_size: int, device: torch.device, out: Path,
                because: bool = True) -> dict:
    prov = Provenance("bench", "0", "bench", dt.datetime.now(dt.timezone.utc))
    options = ScoreConfig(top_n=k, block_size=block_size)
    with PeakRss(interval=0.02, children=False) as mem:
        t0 = time.perf_counter()
        summary = write_topn(bundle, data, prov, out, options, device, because=because)
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
    if getattr(args, "engine", "local") == "spark":
        return run_spark_bench(args)
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
        engs, bare, gemms = [], [], []
        for rep in range(args.repeat):
            engs.append(time_engine(bundle, data, args.k, args.block_size, device, Path(tmp) / str(rep)))
            bare.append(time_engine(bundle, data, args.k, args.block_size, device,
                                    Path(tmp) / f"{rep}-no-because", because=False)["seconds"])
            gemms.append(time_gemm_topk(u, v, args.k, args.block_size, device))
    eng = min(engs, key=lambda e: e["seconds"])
    without = min(bare)
    eng["peak_rss_mb"] = max(e["peak_rss_mb"] for e in engs)
    gemm = min(gemms)
    spark_s = None if args.skip_spark else time_spark_als(u, v, args.k)
    out = {
        "users": args.users, "items": args.items, "factors": args.factors, "k": args.k,
        "seen_per_user": args.seen, "block_size": args.block_size, "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "repeat": args.repeat, "seconds": round(eng["seconds"], 3),
        "seconds_without_because": round(without, 3),
        "because_overhead": round(eng["seconds"] / without, 3),
        "scores_per_second": round(args.users * args.items / eng["seconds"]),
        "rows_written": eng["rows"], "parquet_mb": round(eng["parquet_mb"], 1),
        "rss_before_mb": round(eng["rss_before_mb"], 1), "peak_rss_mb": round(eng["peak_rss_mb"], 1),
        "max_rss_process_mb": round(max_rss_mb(), 1),
        "gemm_topk_seconds": round(gemm, 3),
        "ratio_vs_gemm_topk": round(eng["seconds"] / gemm, 3),
        "spark_als_seconds": None if spark_s is None else round(spark_s, 3),
        "ratio_vs_spark_als": None if spark_s is None else round(spark_s / eng["seconds"], 2),
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }
    return out


def main(args: argparse.Namespace) -> int:
    out = run_bench(args)
    width = max(map(len, out))
    for key, value in out.items():
        print(f"{key:<{width}}  {value}")
    if out.get("engine") != "spark":
        print("ratio_vs_spark_als = Spark seconds / engine seconds (higher is better); "
              "ratio_vs_gemm_topk = engine seconds / bare loop seconds (1.0 is the floor); "
              "because_overhead = engine seconds / engine seconds without `because`")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
    return 0


# --- `--engine spark`: the distributed scorer, inputs from the warehouse ---------------------------

BENCH_DS = "2024-01-01"
BENCH_MODEL = "recsys_bench"


def generate_warehouse(warehouse: str, users: int, items: int, factors: int, seen: int, seed: int,
                       chunk: int = 100_000) -> dict:
    """Write the Spark engine's inputs at ``warehouse``: a training set of ``ds`` (``seen`` random
    items per user, duplicates dropped) and a model version's vectors, ``chunk`` users at a time.

    Cold start is exercised as in production: the last 0.1 % of users have no history and the 0.1 %
    before them have history but no vector (unknown to the model). Runs in a child process (see
    :func:`run_spark_bench`), so none of it is charged to the driver being measured.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recsys import io
    from recsys.schema import TRAINING_SET
    from recsys.score.vectors import write_vectors

    rng = np.random.default_rng(seed)
    n_cold = max(1, users // 1000)
    fresh_from, unknown_from = users - n_cold, users - 2 * n_cold  # no history / no vector
    user_ids = lambda lo, hi: np.char.add("user", np.arange(lo, hi).astype(str))  # noqa: E731
    io.clear_staging(warehouse, TRAINING_SET, BENCH_DS)
    staged = io.staging_path(warehouse, TRAINING_SET, BENCH_DS)
    for sub in ("interactions", "user_map", "item_map"):
        (staged / sub).mkdir(parents=True)
    pq.write_table(pa.table({"item_idx": pa.array(np.arange(items), pa.int32()),
                             "item_id": np.char.add("item", np.arange(items).astype(str))}),
                   staged / "item_map" / "part-00000.parquet")
    rows = 0
    seen = min(seen, items)
    for part, lo in enumerate(range(0, users, chunk)):
        hi = min(lo + chunk, users)
        with_history = np.arange(lo, min(hi, fresh_from), dtype=np.int64)
        pairs = np.unique(np.repeat(with_history, seen) * items + rng.integers(0, items, len(with_history) * seen))
        u, i = pairs // items, pairs % items
        rows += len(pairs)
        pq.write_table(pa.table({
            "user_idx": pa.array(u, pa.int32()), "item_idx": pa.array(i, pa.int32()),
            "weight": pa.array(np.ones(len(u), np.float32)), "rating": pa.nulls(len(u), pa.float32()),
            "ts": pa.array(np.zeros(len(u), np.int64), pa.timestamp("us"))}),
            staged / "interactions" / f"part-{part:05d}.parquet")
        pq.write_table(pa.table({"user_idx": pa.array(np.arange(lo, hi), pa.int32()),
                                 "user_id": user_ids(lo, hi)}), staged / "user_map" / f"part-{part:05d}.parquet")
    io.publish_dir(staged, io.partition_path(warehouse, TRAINING_SET, BENCH_DS))

    def user_chunks():
        for lo in range(0, unknown_from, chunk):
            hi = min(lo + chunk, unknown_from)
            vecs = rng.standard_normal((hi - lo, factors), dtype=np.float32) / np.float32(np.sqrt(factors))
            yield user_ids(lo, hi), vecs

    item_vecs = rng.standard_normal((items, factors), dtype=np.float32)
    vectors = write_vectors(warehouse, BENCH_MODEL, "1", "bench", user_chunks(),
                            np.char.add("item", np.arange(items).astype(str)), item_vecs, source="bench")
    return {"vectors": str(vectors), "interactions": rows, "users_no_history": users - fresh_from,
            "users_no_vector": fresh_from - unknown_from}


class _ProcessPeaks:
    """Peak RSS of this Python driver, of its JVM (the py4j gateway, a child process) and of the
    Python workers the JVM forks, sampled in the background."""

    def __init__(self, interval: float = 0.1, app_id: str | None = None) -> None:
        import psutil

        self.me = psutil.Process()
        self.interval = interval
        self.executors = _executor_processes(app_id) if app_id else []
        self.peak = {"python_driver": 0, "jvm": 0, "python_workers": 0, "executors": 0}
        self.start = dict(self.peak)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _jvm(self):
        for child in self.me.children(recursive=False):
            try:
                if "java" in child.name():
                    return child
            except Exception:  # noqa: BLE001 - psutil.Error: the process went away
                pass
        return None

    def sample(self) -> dict[str, int]:
        import psutil

        now = {"python_driver": self.me.memory_info().rss, "jvm": 0, "python_workers": 0, "executors": 0}
        for ex in self.executors:  # executor JVMs of a standalone cluster on this host + Python workers
            try:
                now["executors"] += sum(p.memory_info().rss for p in [ex, *ex.children(recursive=True)])
            except psutil.Error:
                pass
        jvm = self._jvm()
        if jvm is not None:
            try:
                now["jvm"] = jvm.memory_info().rss
                now["python_workers"] = sum(p.memory_info().rss for p in jvm.children(recursive=True))
            except psutil.Error:
                pass
        for key, value in now.items():
            self.peak[key] = max(self.peak[key], value)
        return now

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> "_ProcessPeaks":
        self.start = self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def _executor_processes(app_id: str) -> list:
    """This application's executor JVMs running on this host (a standalone worker starts them)."""
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info.get("cmdline") or []
        if any("CoarseGrainedExecutorBackend" in c for c in cmd) and app_id in cmd:
            found.append(p)
    return found


def _executors(spark) -> tuple[int, int]:
    """(executors, task slots). In local mode the one executor lives in the driver's JVM."""
    infos = spark.sparkContext._jsc.sc().statusTracker().getExecutorInfos()
    hosts = len(infos)
    executors = hosts - 1 if hosts > 1 else hosts
    return executors, spark.sparkContext.defaultParallelism


def run_spark_bench(args: argparse.Namespace) -> dict:
    """Generate the warehouse inputs (child process), then time :func:`score_warehouse`."""
    import multiprocessing as mp
    import os
    import shutil
    import subprocess

    from recsys.config import SparkConfig
    from recsys.score.spark_score import score_warehouse
    from recsys.spark import get_spark

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-spark-scoring-"))
    warehouse = work / "warehouse"
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(1) as pool:
        gen = pool.apply(generate_warehouse, (str(warehouse), args.users, args.items, args.factors,
                                              args.seen, args.seed))
        # Warm-up inputs: the first run of a session pays the JVM's JIT and the Python workers'
        # imports (torch), ~1 min on this machine; the figures are for the steady state.
        tiny = None if args.no_warmup else pool.apply(
            generate_warehouse, (str(work / "warmup"), 2000, min(args.items, 1000), args.factors, args.seen,
                                 args.seed))
    gen_s = time.perf_counter() - t0
    conf = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
            "spark.sql.session.timeZone": "UTC",
            "spark.driver.memory": args.driver_memory, "spark.executor.memory": args.executor_memory,
            "spark.sql.parquet.compression.codec": "zstd"}
    if args.shuffle_partitions:
        conf["spark.sql.shuffle.partitions"] = str(args.shuffle_partitions)
    for item in args.conf:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--conf takes KEY=VALUE, got {item!r}")
        conf[key] = value
    with _ProcessPeaks() as before_spark:
        pass
    t0 = time.perf_counter()
    spark = get_spark("bench-scoring", SparkConfig(master=args.master, conf=conf))
    executors, slots = _executors(spark)
    start_s = time.perf_counter() - t0
    prov = Provenance(BENCH_MODEL, "1", "bench", dt.datetime.now(dt.timezone.utc))
    options = ScoreConfig(top_n=args.k, block_size=args.block_size, engine="spark")
    out = work / "out"
    try:
        t0 = time.perf_counter()
        if tiny is not None:
            score_warehouse(spark, work / "warmup", BENCH_DS, Path(tiny["vectors"]), prov, work / "warmup-out",
                            options.model_copy(update={"top_n": min(args.k, 1000)}), partitions=args.partitions)
        warmup_s = time.perf_counter() - t0
        with _ProcessPeaks(app_id=spark.sparkContext.applicationId) as mem:
            t0 = time.perf_counter()
            summary = score_warehouse(spark, warehouse, BENCH_DS, Path(gen["vectors"]), prov, out, options,
                                      partitions=args.partitions)
            seconds = time.perf_counter() - t0
        executors = max(executors, _executors(spark)[0])
    finally:
        spark.stop()
    mb = lambda b: round(b / 2**20, 1)  # noqa: E731
    figures = {
        "engine": "spark", "master": args.master, "executors": executors, "task_slots": slots,
        "users": args.users, "items": args.items, "factors": args.factors, "k": args.k,
        "seen_per_user": args.seen, "block_size": args.block_size, "partitions": summary["partitions"],
        "interactions": gen["interactions"], "users_no_history": gen["users_no_history"],
        "users_no_vector": gen["users_no_vector"],
        "generate_seconds": round(gen_s, 1), "spark_start_seconds": round(start_s, 1),
        "warmup_seconds": round(warmup_s, 1),
        "seconds": round(seconds, 3), "users_per_second": round(args.users / seconds),
        "phase_seconds": summary["phases"],
        "rows_written": summary["rows"], "users_model": summary["users_model"],
        "users_cold": summary["users"] - summary["users_model"],
        "python_driver_rss_before_spark_mb": mb(before_spark.start["python_driver"]),
        "python_driver_rss_start_mb": mb(mem.start["python_driver"]),
        "python_driver_peak_rss_mb": mb(mem.peak["python_driver"]),
        "jvm_driver_rss_start_mb": mb(mem.start["jvm"]), "jvm_driver_peak_rss_mb": mb(mem.peak["jvm"]),
        "python_workers_peak_rss_mb": mb(mem.peak["python_workers"]),
        "executors_on_this_host": len(mem.executors),
        "executors_peak_rss_mb": mb(mem.peak["executors"]),
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }
    if args.master.startswith("local"):
        figures["note"] = ("local mode: the executor runs inside the driver JVM and the Python "
                           "workers are its children, so jvm_driver_* includes the executor")
    else:
        figures["note"] = ("python_workers_* are the driver JVM's children (none off local mode); "
                           "executors_* sums this host's executor JVMs and their Python workers")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return figures
