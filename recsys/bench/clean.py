"""`recsys bench clean`: clean N generated events with the Spark job, then the same rules in DuckDB.

Both engines read the same landing files (JSON Lines, CSV, Parquet, gzip in part), apply the same
rules (quarantine reasons, duplicates, bots) and write Parquet. Printed: seconds, events/s, peak
memory (RSS of the process tree: the Spark JVM included), both engines' books and the time ratio.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import psutil

from recsys.bench.measure import PeakRss, cpu_seconds
from recsys.config import CleanConfig, Config, load_config

DS = "2024-01-10"
# Internal/test accounts in the generated logs (when conf names none), so the internal_user rule
# has rows to file; their events are 0.1 % of the day.
BENCH_INTERNAL_USERS = ("qa-internal-1", "qa-internal-2")
INTERNAL_RATE = 0.001
log = logging.getLogger(__name__)


def ensure_landing(workdir: Path, events: int, bad_row_rate: float,
                   internal_users: tuple[str, ...] = BENCH_INTERNAL_USERS) -> Path:
    """Generate the landing once per (events, bad_row_rate, internal users); reuse it later."""
    from recsys.data.generator import generate_landing

    landing = workdir / f"landing-{events}-{bad_row_rate}-qa{len(internal_users)}"
    marker = landing / "_generated.json"
    if not marker.exists():
        t0 = time.perf_counter()
        report = generate_landing(landing, DS, 1, seed=42, n_users=max(1000, events // 50),
                                  n_items=max(500, events // 200), events_per_day=events,
                                  bad_row_rate=bad_row_rate, chunk_size=500_000,
                                  internal_users=internal_users, internal_rate=INTERNAL_RATE)
        report["seconds"] = round(time.perf_counter() - t0, 1)
        marker.write_text(json.dumps(report))
    return landing


def bench_config() -> Config:
    """The configuration both engines run with: conf/ plus internal users when it names none."""
    cfg = load_config()
    if cfg.clean.internal_users:
        return cfg
    clean = cfg.clean.model_copy(update={"internal_users": BENCH_INTERNAL_USERS})
    return cfg.model_copy(update={"clean": clean})


def _spark_run(landing: Path, out: Path, master: str, cfg: Config) -> dict:
    from recsys.spark import get_spark
    from recsys.steps.clean import run_clean

    # Shuffle partitions: run_clean sizes them from the landing files (AQE merges small ones).
    spark_cfg = cfg.spark.model_copy(update={"conf": {**cfg.spark.conf, "spark.driver.memory": "3g"}})
    with PeakRss() as mem:
        t0 = time.perf_counter()
        spark = get_spark("bench-clean", spark_cfg, master=master)
        t1, c1 = time.perf_counter(), cpu_seconds()
        summary = run_clean(spark, cfg, DS, landing, out / "spark")
        t2, c2 = time.perf_counter(), cpu_seconds()
        spark.stop()
    return {"seconds": t2 - t1, "cpu_seconds": c2 - c1, "startup_seconds": t1 - t0,
            "peak_rss_mb": mem.peak / 2**20,
            "books": {k: summary[k] for k in ("raw", "clean", "duplicates", "quarantined")},
            "reasons": summary["reasons"]}


def _duck_run(landing: Path, out: Path, cfg: CleanConfig, threads: int) -> dict:
    from recsys.bench import duck_clean

    with PeakRss() as mem:
        t0, c0 = time.perf_counter(), cpu_seconds()
        books = duck_clean.clean(landing / "interactions" / f"ds={DS}", out / "duckdb", DS, cfg, threads)
        seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": mem.peak / 2**20, **books}


def run_bench(events: int, workdir: Path, *, master: str = "local[2]", bad_row_rate: float = 0.02,
              json_out: Path | None = None) -> dict:
    """Run both engines on the same generated files; print and return the figures."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = bench_config()
    landing = ensure_landing(workdir, events, bad_row_rate, cfg.clean.internal_users)
    out = workdir / "out"
    spark = _spark_run(landing, out, master, cfg)
    threads = int(master[len("local["):-1]) if master.startswith("local[") and master[6:-1].isdigit() else 2
    duck = _duck_run(landing, out, cfg.clean, threads)
    n = spark["books"]["raw"]
    result = {
        "events": n, "master": master, "duckdb_threads": threads, "spark": spark, "duckdb": duck,
        "spark_events_per_s": n / spark["seconds"], "duckdb_events_per_s": n / duck["seconds"],
        "ratio_spark_over_duckdb": spark["seconds"] / duck["seconds"],
        "cpu_ratio_spark_over_duckdb": spark["cpu_seconds"] / duck["cpu_seconds"],
        "load_average": list(psutil.getloadavg()),
        "books_agree": spark["books"] == duck["books"],
    }
    _print(result)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2))
    return result


def _print(r: dict) -> None:
    print(f"clean benchmark: {r['events']:,} raw events, Spark {r['master']} vs DuckDB "
          f"{r['duckdb_threads']} threads")
    print(f"{'engine':<8}{'seconds':>10}{'CPU s':>8}{'events/s':>14}{'peak RSS MB':>14}"
          "  books (raw/clean/dup/quar)")
    for name in ("spark", "duckdb"):
        e, b = r[name], r[name]["books"]
        print(f"{name:<8}{e['seconds']:>10.1f}{e['cpu_seconds']:>8.1f}{r[name + '_events_per_s']:>14,.0f}"
              f"{e['peak_rss_mb']:>14,.0f}  {b['raw']}/{b['clean']}/{b['duplicates']}/{b['quarantined']}")
    print(f"Spark / DuckDB time ratio: {r['ratio_spark_over_duckdb']:.2f}x, CPU-time ratio: "
          f"{r['cpu_ratio_spark_over_duckdb']:.2f}x (load average {r['load_average'][0]:.1f}; "
          f"Spark session start-up, not counted: {r['spark']['startup_seconds']:.1f} s); "
          f"books agree: {r['books_agree']}")
