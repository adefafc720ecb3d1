"""`recsys bench train`: synthetic ML-100K-shaped data, one row per family, failures reported."""
from __future__ import annotations

import json

import numpy as np
import pytest

from recsys.bench.train import (
    markdown_table,
    run_train_bench,
    synthetic_interactions,
    train_family,
)
from recsys.cli import main

TINY = (40, 30, 300)


def test_synthetic_data_has_the_requested_shape_and_unique_pairs():
    data = synthetic_interactions(*TINY, seed=1)
    assert (data.n_users, data.n_items, len(data)) == TINY
    assert len(np.unique(data.user_idx * data.n_items + data.item_idx)) == len(data)
    assert set(np.unique(data.rating)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert data.user_features.shape[0] == 40 and data.item_features.shape[0] == 30
    assert np.all(np.diff(data.ts) > 0)


def test_synthetic_data_refuses_a_dense_shape():
    with pytest.raises(ValueError, match="do not fit"):
        synthetic_interactions(10, 10, 80)


def test_epoch_family_reports_the_loops_samples_per_second():
    data = synthetic_interactions(*TINY, seed=1)
    row = train_family("mf_bpr", {"factors": 4, "batch_size": 64}, data, epochs=2)
    assert row["family"] == "mf_bpr" and row["device"] == "cpu"
    assert row["epochs"] == 2 and row["throughput"] == "loop samples/s"
    # The loop times single epochs, so its rate is above rows / (wall time of the whole fit).
    assert row["samples_per_s"] >= len(data) / row["wall_s"]
    assert row["peak_rss_mb"] > 10


def test_closed_form_family_reports_fit_rows_per_second():
    data = synthetic_interactions(*TINY, seed=1)
    row = train_family("popularity", {}, data)
    assert row["epochs"] is None and row["throughput"] == "fit rows/s"
    assert row["samples_per_s"] == pytest.approx(len(data) / row["wall_s"])


def test_a_failing_family_gets_an_error_row_and_the_others_still_run():
    data = synthetic_interactions(*TINY, seed=1)
    result = run_train_bench(data, ["no_such_family", "popularity"], isolate=False)
    bad, good = result["families"]
    assert "no_such_family" in bad["error"] and "error" not in good
    table = markdown_table(result)
    assert "| no_such_family | cpu | failed: UnknownModelError" in table
    assert table.splitlines()[-1].startswith("| popularity | cpu | — |")


def test_cli_writes_the_table_and_json(tmp_path, capsys):
    out = tmp_path / "train.json"
    rc = main(["bench", "train", "--shape", "40x30x300", "--models", "popularity,ease",
               "--device", "cpu", "--in-process", "--threads", "1", "--json", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert [r["family"] for r in doc["families"]] == ["popularity", "ease"]
    assert [r["torch_threads"] for r in doc["families"]] == [1, 1]
    assert doc["data"] == {"source": "synthetic 40x30, 300 ratings", "users": 40, "items": 30,
                           "rows": 300}
    assert "| ease | cpu |" in capsys.readouterr().out


@pytest.mark.slow
def test_each_family_trains_in_its_own_process():
    data = synthetic_interactions(*TINY, seed=1)
    result = run_train_bench(data, ["popularity"], isolate=True, timeout=120)
    (row,) = result["families"]
    assert "error" not in row, row
    assert row["peak_rss_mb"] > 10


@pytest.mark.slow
def test_a_family_over_its_time_limit_is_stopped_and_reported():
    data = synthetic_interactions(*TINY, seed=1)
    result = run_train_bench(data, ["mf_bpr"], epochs=100_000, isolate=True, timeout=15)
    (row,) = result["families"]
    assert row["error"].startswith("timed out after")


def test_compare_implicit_reports_four_fits_and_ratios_from_their_own_numbers(capsys):
    pytest.importorskip("implicit", reason="implicit is a benchmark-only dependency "
                        "(requirements-dev.txt); --compare implicit needs it")
    from recsys.bench.train import compare_implicit, compare_table

    data = synthetic_interactions(60, 50, 900, seed=2)
    result = compare_implicit(data, threads=1, epochs=2, repeat=2)
    rows = {r["model"]: r for r in result["rows"]}
    assert list(rows) == ["mf_bpr", "implicit BPR", "ials", "implicit ALS"]
    train_rows = result["split"]["train_rows"]
    assert 0 < train_rows < len(data) and train_rows + result["split"]["test_rows"] == len(data)
    for r in rows.values():
        # Same work on both sides: the config's factors, the epochs asked for, one thread.
        assert (r["epochs"], r["threads"]) == (2, 1)
        assert r["samples_per_s"] == pytest.approx(2 * train_rows / r["train_s"])
        assert r["s_per_iteration"] == pytest.approx(r["train_s"] / 2)
        assert 0.0 <= r["ndcg@10"] <= 1.0
    assert rows["mf_bpr"]["factors"] == rows["implicit BPR"]["factors"]
    assert rows["ials"]["factors"] == rows["implicit ALS"]["factors"]
    bpr, als = result["ratios"]
    assert bpr["speed_ratio"] == pytest.approx(
        rows["mf_bpr"]["samples_per_s"] / rows["implicit BPR"]["samples_per_s"])
    assert als["speed_ratio"] == pytest.approx(
        rows["ials"]["s_per_iteration"] / rows["implicit ALS"]["s_per_iteration"])
    assert bpr["ndcg@10_diff"] == pytest.approx(
        rows["mf_bpr"]["ndcg@10"] - rows["implicit BPR"]["ndcg@10"])
    table = compare_table(result)
    assert f"| mf_bpr vs implicit BPR | samples/s | {bpr['speed_ratio']:.2f} | >= 0.5 |" in table
    assert f"| ials vs implicit ALS | s/iteration | {als['speed_ratio']:.2f} | <= 2 |" in table


def test_compare_implicit_from_the_command_line(tmp_path, capsys):
    pytest.importorskip("implicit", reason="implicit is a benchmark-only dependency")
    out = tmp_path / "cmp.json"
    code = main(["bench", "train", "--compare", "implicit", "--shape", "50x40x600",
                 "--epochs", "2", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| implicit ALS | implicit |" in printed and "| ials vs implicit ALS |" in printed
    saved = json.loads(out.read_text())
    assert [r["model"] for r in saved["rows"]] == ["mf_bpr", "implicit BPR", "ials", "implicit ALS"]
    assert saved["data"]["rows"] == 600 and saved["rows"][0]["threads"] == 1


def test_compare_implicit_without_implicit_says_how_to_get_it(monkeypatch):
    import builtins

    from recsys.bench.train import compare_implicit

    real_import = builtins.__import__

    def no_implicit(name, *args, **kwargs):
        if name == "implicit" or name.startswith("implicit."):
            raise ImportError("No module named 'implicit'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_implicit)
    with pytest.raises(RuntimeError, match="pip install implicit"):
        compare_implicit(synthetic_interactions(*TINY, seed=1), epochs=1)
