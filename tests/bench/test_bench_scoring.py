"""`recsys bench scoring` runs end to end on a tiny shape and writes every promised field."""
from __future__ import annotations

import json

from recsys.cli import main


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
