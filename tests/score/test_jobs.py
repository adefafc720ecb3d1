"""The score and publish jobs end to end on tiny data, the registry and training set stubbed."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from recsys import io
from recsys.score.engine import pending_path
from recsys.tracking import LoadedModel, VersionInfo
from tests.score.conftest import fit_bundle, make_data

DS = "2024-03-02"


class FakeRegistry:
    """The few registry calls the score step makes, over in-memory versions."""

    def __init__(self):
        self.versions: dict[str, tuple[VersionInfo, object]] = {}
        self.champion: str | None = None

    def add(self, version: str, bundle, ds: str, champion: bool = True) -> None:
        self.versions[version] = (VersionInfo("recsys_mf_bpr", version, f"r{version}", ds,
                                              "promoted" if champion else "rejected"), bundle)
        if champion:
            self.champion = version

    def install(self, monkeypatch) -> None:
        m = "recsys.steps.score"
        monkeypatch.setattr(f"{m}.champion_version", lambda cfg, family: self.champion)
        monkeypatch.setattr(f"{m}.version_info",
                            lambda cfg, family, v: self.versions[v][0] if v in self.versions else None)
        monkeypatch.setattr(f"{m}.list_versions", lambda cfg, family: [i for i, _ in self.versions.values()])
        monkeypatch.setattr(f"{m}.load_version", lambda cfg, family, v: LoadedModel(
            self.versions[v][1], f"recsys_{family}", v, f"r{v}"))


@pytest.fixture()
def registry(monkeypatch, config):
    reg = FakeRegistry()
    reg.install(monkeypatch)
    return reg


@pytest.fixture()
def stubs(monkeypatch, config, registry):
    data = make_data()
    bundle = fit_bundle(data)
    for step in ("recsys.steps.score", "recsys.steps.publish"):
        monkeypatch.setattr(f"{step}.load_training_set", lambda wh, ds: data)
    registry.add("7", bundle, "2024-03-01")
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
    served = config.mlflow.registered_name(config.score.model)  # the fake registry serves any family
    assert f"published ds=2024-03-02: 36 rows, 12 users, {served} v7" in capsys.readouterr().out


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


def _published(config, ds=DS):
    final = io.partition_path(config.paths.warehouse, "recommendations", ds)
    return json.loads((final / "_manifest.json").read_text()), pd.read_parquet(final)


def test_rerun_job_of_a_published_day_keeps_its_version_unless_told(stubs, registry, config, capsys):
    from jobs import publish, score

    data, bundle = stubs
    top = ["--set", "score.top_n=3"]
    assert score.main(["--ds", DS, *top]) == 0 and publish.main(["--ds", DS, *top]) == 0
    first, first_rows = _published(config)
    assert first["model_version"] == "7" and first["scoring"]["models"]["model"]["rule"] == "champion"
    registry.add("8", fit_bundle(data, epochs=6), "2024-03-05")  # a later day's champion

    assert score.main(["--ds", DS, *top]) == 0 and publish.main(["--ds", DS, *top]) == 0
    again, again_rows = _published(config)
    assert again["model_version"] == "7" and again["scoring"]["models"]["model"]["rule"] == "served"
    pd.testing.assert_frame_equal(again_rows.drop(columns="generated_at"),
                                  first_rows.drop(columns="generated_at"))

    assert score.main(["--ds", DS, *top, "--rescore-with-champion"]) == 0
    assert publish.main(["--ds", DS, *top]) == 0
    rescored, _ = _published(config)
    assert rescored["model_version"] == "8"
    assert rescored["scoring"]["models"]["model"]["rule"] == "rescore_with_champion"


def test_scoring_a_family_that_was_never_trained_names_the_fix(registry, config):
    """Regression: with score.model ease_hybrid by default, a run that trained only mf_bpr
    failed with a LookupError traceback; the job now exits with what to train or pass."""
    from jobs import score

    with pytest.raises(SystemExit, match=r"error: no version of recsys_ease_hybrid has the alias "
                       r"'champion'.*must include ease_hybrid.*--model"):
        score.main(["--ds", DS])
    assert not pending_path(config.paths.warehouse, DS).exists()
