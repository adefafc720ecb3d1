"""`recsys bench scoring` runs end to end on a tiny shape and writes every promised field."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recsys.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_bench_scoring_writes_its_json(tmp_path, capsys):
    out = tmp_path / "scoring.json"
    assert main(["bench", "scoring", "--users", "300", "--items", "50", "--factors", "8", "--k", "10",
                 "--block-size", "64", "--skip-spark", "--repeat", "2", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert {"users", "items", "factors", "k", "seconds", "scores_per_second", "peak_rss_mb",
            "spark_als_seconds", "ratio_vs_spark_als", "gemm_topk_seconds",
            "ratio_vs_gemm_topk"} <= set(figures)
    assert figures["rows_written"] == 300 * 10
    # `seconds` is rounded to the millisecond, so scores/s must lie within what that rounding allows
    scores, secs = 300 * 50, figures["seconds"]
    assert scores / (secs + 0.0005) - 1 <= figures["scores_per_second"] <= scores / max(secs - 0.0005, 1e-9) + 1
    assert "ratio_vs_gemm_topk" in capsys.readouterr().out


@pytest.mark.slow  # starts its own Spark (a subprocess, so the tests' session is not stopped)
def test_bench_scoring_spark_engine(tmp_path):
    out = tmp_path / "spark.json"
    cmd = [sys.executable, "-m", "recsys.cli", "bench", "scoring", "--engine", "spark", "--users", "2000",
           "--items", "300", "--factors", "8", "--k", "10", "--shuffle-partitions", "4", "--no-warmup",
           "--json", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["rows_written"] == 2000 * 10
    assert (figures["users_model"], figures["users_cold"]) == (1996, 4)  # 0.1 % fresh, 0.1 % unknown
    assert figures["executors"] == 1 and figures["task_slots"] == 2
    assert figures["python_driver_peak_rss_mb"] > 0 and figures["jvm_driver_peak_rss_mb"] > 0
    assert figures["users_per_second"] > 0 and "users_per_second" in done.stdout
