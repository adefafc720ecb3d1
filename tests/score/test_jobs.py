"""The score and publish jobs end to end on tiny data, the registry and training set stubbed."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from recsys import io
from recsys.score.engine import pending_path
from recsys.tracking import LoadedModel
from tests.score.conftest import fit_bundle, make_data

DS = "2024-03-02"


@pytest.fixture()
def stubs(monkeypatch, config):
    data = make_data()
    bundle = fit_bundle(data)
    for step in ("recsys.steps.score", "recsys.steps.publish"):
        monkeypatch.setattr(f"{step}.load_training_set", lambda wh, ds: data)
    monkeypatch.setattr("recsys.steps.score.load_model",
                        lambda cfg, family, alias="champion": LoadedModel(bundle, f"recsys_{family}", "7", "r7"))
    return data, bundle


def test_score_then_publish_jobs(stubs, config, capsys):
    from jobs import publish, score

    assert score.main(["--ds", DS, "--set", "score.top_n=3"]) == 0
    assert pending_path(config.paths.warehouse, DS).is_dir()
    assert not io.partition_path(config.paths.warehouse, "recommendations", DS).exists()
    assert publish.main(["--ds", DS, "--set", "score.top_n=3"]) == 0
    final = io.partition_path(config.paths.warehouse, "recommendations", DS)
    manifest = json.loads((final / "_manifest.json").read_text())
    assert (manifest["row_count"], manifest["user_count"], manifest["model_version"]) == (36, 12, "7")
    assert manifest["scoring"]["users_model"] == 12
    assert "published ds=2024-03-02: 36 rows, 12 users, recsys_mf_bpr v7" in capsys.readouterr().out


def test_publish_job_refuses_with_a_clear_message(stubs, config, capsys):
    from jobs import publish, score

    score.main(["--ds", DS, "--set", "score.top_n=3"])
    assert publish.main(["--ds", DS, "--set", "score.top_n=2"]) == 1  # ranks 3 > top_n
    err = capsys.readouterr().err
    assert "not published, the previous partition is unchanged" in err and "ranks:" in err


def test_score_pairs_command(stubs, tmp_path, capsys):
    from recsys.cli import main

    data, bundle = stubs
    bundle.save(tmp_path / "bundle")
    pd.DataFrame({"user_id": ["u00", "u01", "nobody"], "item_id": ["i01", "i02", "i01"]}).to_csv(
        tmp_path / "pairs.csv", index=False)
    assert main(["score-pairs", "--model-uri", str(tmp_path / "bundle"),
                 "--pairs", str(tmp_path / "pairs.csv"), "--out", str(tmp_path / "out.csv")]) == 0
    out = pd.read_csv(tmp_path / "out.csv")
    u = bundle.user_index(out["user_id"].to_numpy()[:2])
    i = bundle.item_index(out["item_id"].to_numpy()[:2])
    assert out["score"][:2].tolist() == pytest.approx(bundle.model.score(u, i).tolist(), rel=1e-5)
    assert pd.isna(out["score"][2])
    assert "scored 2 of 3 pairs" in capsys.readouterr().out


def test_validate_only_checks_without_publishing(stubs, config, capsys):
    from jobs import publish, score

    score.main(["--ds", DS, "--set", "score.top_n=3"])
    assert publish.main(["--ds", DS, "--set", "score.top_n=3", "--validate-only"]) == 0
    assert "staged table passes" in capsys.readouterr().out
    assert pending_path(config.paths.warehouse, DS).is_dir()
    assert not io.partition_path(config.paths.warehouse, "recommendations", DS).exists()
    assert publish.main(["--ds", DS, "--set", "score.top_n=2", "--validate-only"]) == 1
