"""``recsys bench nightly``: the family is fitted and every user scored by the product's engine;
a non-factorized family on a catalog above ``score.full_scoring_max_items`` re-ranks the
candidates of ``score.candidates_model``, as the score step does."""
from __future__ import annotations

import json

import pytest

from recsys.bench.nightly import report, run_nightly_bench
from recsys.cli import main as cli_main
from recsys.config import load_config


@pytest.fixture()
def cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    return load_config(env="local", overrides={"score.full_scoring_max_items": 100,
                                               "score.candidates_m": 20, "score.top_n": 5,
                                               "models.mf_bpr.factors": 8})


def test_small_catalog_scores_every_item_of_every_user(cfg):
    import torch

    result = run_nightly_bench(cfg, "ease", users=150, items=80, events=3000,
                               device=torch.device("cpu"))
    assert result["reranked_candidates_of"] is None and "candidates_fit" not in result["stages"]
    assert result["rows"] == 150 * 5  # every user has history and 80 items leave 5 unseen
    assert set(result["stages"]) == {"generate", "fit", "score"}
    assert result["stages"]["score"]["users_per_second"] > 0
    assert "every item scored" in report(result)


def test_large_catalog_reranks_the_candidates_model_like_the_score_step(cfg):
    import torch

    result = run_nightly_bench(cfg, "ease_hybrid", users=120, items=300, events=3000,
                               device=torch.device("cpu"), candidate_epochs=1)
    assert result["reranked_candidates_of"] == "mf_bpr" and result["candidates_m"] == 20
    assert "candidates_fit" in result["stages"]
    assert result["rows"] == 120 * 5
    assert result["fit_and_score_seconds"] == pytest.approx(
        sum(s["seconds"] for k, s in result["stages"].items() if k != "generate"))
    assert "re-ranking the top 20 of mf_bpr" in report(result)


def test_cli_prints_and_writes_the_figures(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    out = tmp_path / "nightly.json"
    assert cli_main(["bench", "nightly", "--model", "popularity", "--users", "60", "--items", "40",
                     "--events", "800", "--threads", "1", "--set", "score.top_n=3",
                     "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    figures = json.loads(out.read_text())
    assert figures["family"] == "popularity" and figures["rows"] == 60 * 3
    assert figures["machine"]["torch_threads"] == 1
    assert f"{figures['stages']['score']['users_per_second']:,.0f} users/s" in printed
