"""The configuration refuses nonsense before any step does work (one regression test per defect).

Each of these was accepted once and failed late, or worse, silently did something else:
``score.top_n=true`` became 1, a huge ``top_n`` ran out of memory after the model was loaded,
``clean.id_pattern='('`` passed until Spark compiled it, ``evaluate.metric=bogus@10`` blocked every
promotion, ``--models ""`` trained the default, ``--models mf_bpr,nope`` trained and registered
mf_bpr before failing, and ``--env`` loaded any YAML file on disk.
"""
from __future__ import annotations

import sys
import types

import pytest

from recsys.config import ConfigError, load_config
from recsys.model_params import model_names

DS = "2024-05-06"
# What recsys.metrics.ranking_metrics computes (held equal to recsys.config.RANKING_METRICS below).
RANKING_METRICS = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")


# -- strict numbers and booleans -----------------------------------------------------------------
def test_boolean_is_not_an_integer_top_n(recsys_home):
    with pytest.raises(ConfigError, match="score.top_n"):
        load_config(overrides={"score.top_n": True})


@pytest.mark.parametrize("key,value", [
    ("score.block_size", False),
    ("score.candidates_m", True),
    ("evaluate.k", True),
    ("features.lookback_days", True),
    ("publish.retention_partitions", True),
    ("train.epochs", True),
    ("clean.max_quantity", True),           # a float field: a bool is no number either
    ("clean.event_weights.view", True),
    ("evaluate.tolerance", False),
    ("score.exclude_seen", 1),              # and a number is no boolean
    ("score.top_n", "20"),                  # strings are not parsed: YAML typed the value already
    ("score.top_n", 20.0),
])
def test_boolean_is_not_a_number_anywhere(recsys_home, key, value):
    with pytest.raises(ConfigError, match=key.rsplit(".", 1)[0]):
        load_config(overrides={key: value})


def test_set_values_arrive_typed(recsys_home):
    # `--set score.top_n=20` is parsed as YAML: the int 20, which strict validation accepts.
    from jobs._common import parse_set

    cfg = load_config(overrides=parse_set(["score.top_n=20", "clean.max_quantity=50",
                                           "evaluate.tolerance=0", "score.exclude_seen=false"]))
    assert cfg.score.top_n == 20 and cfg.clean.max_quantity == 50.0
    assert cfg.evaluate.tolerance == 0.0 and cfg.score.exclude_seen is False
    with pytest.raises(ConfigError, match="score.top_n"):
        load_config(overrides=parse_set(["score.top_n=true"]))


# -- top_n has an upper bound --------------------------------------------------------------------
def test_top_n_has_an_upper_bound(recsys_home):
    # 1000 (recsys.config.MAX_TOP_N): beyond it the scorers' users x top_n blocks and the table
    # grow without bound (a MemoryError after the model was loaded).
    assert load_config(overrides={"score.top_n": 1000}).score.top_n == 1000
    for too_many in (1001, 10**9):
        with pytest.raises(ConfigError, match="score.top_n"):
            load_config(overrides={"score.top_n": too_many})


def test_top_n_bound_matches_the_dag_form():
    import re
    from pathlib import Path

    from recsys.config import MAX_TOP_N

    dag = (Path(__file__).resolve().parents[1] / "dags" / "recsys_nightly.py").read_text()
    form = re.search(r'"top_n": Param\([^)]*maximum=(\d+)', dag)
    assert form and int(form.group(1)) == MAX_TOP_N


# -- regular expressions are compiled at validation ----------------------------------------------
@pytest.mark.parametrize("pattern", ["(", "[a-", "a{2,1}", "*x"])
def test_invalid_id_pattern_is_refused_at_load(recsys_home, pattern):
    with pytest.raises(ConfigError, match="clean.id_pattern"):
        load_config(overrides={"clean.id_pattern": pattern})


# -- the gate metric is one evaluate computes ----------------------------------------------------
@pytest.mark.parametrize("metric", ["bogus@10", "ndcg", "ndcg@", "ndcg@ten", "NDCG@10", "ndcg@010",
                                    "rmse", "hr@10", "coverage@10", "ndcg@20"])
def test_unknown_gate_metric_is_refused(recsys_home, metric):
    with pytest.raises(ConfigError, match="evaluate.metric"):
        load_config(overrides={"evaluate.metric": metric})


def test_gate_metric_follows_evaluate_k(recsys_home):
    for name in RANKING_METRICS:
        assert load_config(overrides={"evaluate.metric": f"{name}@10"}).evaluate.metric == f"{name}@10"
    cfg = load_config(overrides={"evaluate.k": 20, "evaluate.metric": "map@20"})
    assert cfg.evaluate.metric == "map@20"
    with pytest.raises(ConfigError, match="evaluate.k"):  # k moved, the metric did not
        load_config(overrides={"evaluate.k": 20})


def test_ranking_metric_names_are_the_ones_evaluate_computes():
    import numpy as np
    import scipy.sparse as sp

    from recsys import config
    from recsys.metrics import ranking_metrics

    got = ranking_metrics(np.array([[0, 1]]), sp.csr_matrix(np.array([[1, 0]])), 2)
    assert set(got) == {f"{m}@2" for m in config.RANKING_METRICS} == {f"{m}@2" for m in RANKING_METRICS}


def test_every_allowed_metric_reaches_the_gate_and_promotes(recsys_home):
    # A metric the config accepts is a key of the challenger's metrics: the gate can promote.
    import numpy as np
    import scipy.sparse as sp

    from recsys.evaluate.gate import decide
    from recsys.metrics import ranking_metrics

    cfg = load_config()
    k = cfg.evaluate.k
    challenger = ranking_metrics(np.arange(k)[None, :], sp.csr_matrix(np.eye(1, k)), k)
    for name in RANKING_METRICS:
        metric = load_config(overrides={"evaluate.metric": f"{name}@{k}"}).evaluate.metric
        assert decide(None, challenger, metric, cfg.evaluate.tolerance).promote


# -- --env names a file of conf/env/ -------------------------------------------------------------
@pytest.mark.parametrize("env", ["../../etc/x", "../base", "/etc/passwd", "env/local", "local.yaml",
                                 "local\n", "", "nope"])
def test_env_must_name_a_file_in_conf_env(recsys_home, env):
    with pytest.raises(ConfigError, match="expected one of cluster, local"):
        load_config(env=env)


def test_env_path_outside_conf_env_is_never_read(recsys_home, tmp_path):
    # A YAML file reachable by a relative path must not be loaded as an environment.
    conf = tmp_path / "conf"
    (conf / "env").mkdir(parents=True)
    from recsys.config import DEFAULT_CONF_DIR

    (conf / "base.yaml").write_text((DEFAULT_CONF_DIR / "base.yaml").read_text())
    (conf / "env" / "local.yaml").write_text("{}\n")
    (tmp_path / "evil.yaml").write_text("score: {top_n: 7}\n")
    with pytest.raises(ConfigError, match="unknown environment '../../evil'"):
        load_config(env="../../evil", conf_dir=conf)
    assert load_config(env="local", conf_dir=conf).score.top_n == 10


def test_env_from_recsys_env_is_checked_too(recsys_home, monkeypatch):
    monkeypatch.setenv("RECSYS_ENV", "../base")
    with pytest.raises(ConfigError, match="unknown environment"):
        load_config()


def test_job_env_path_is_refused(recsys_home, capsys):
    from jobs import publish

    with pytest.raises(SystemExit, match="unknown environment '../../etc/x'"):
        publish.main(["--ds", DS, "--env", "../../etc/x"])


# -- model lists ---------------------------------------------------------------------------------
def _recording_train_families(monkeypatch) -> list:
    """Replace the train step with a recorder (no training set, no MLflow)."""
    calls: list = []
    fake = types.ModuleType("recsys.steps.train")
    fake.train_families = lambda cfg, ds, families, **kw: calls.append(list(families)) or []
    monkeypatch.setitem(sys.modules, "recsys.steps.train", fake)
    return calls


def _recording_evaluate_families(monkeypatch) -> list:
    calls: list = []
    fake = types.ModuleType("recsys.steps.evaluate")
    fake.evaluate_families = lambda cfg, ds, families, **kw: calls.append(list(families)) or {}
    monkeypatch.setitem(sys.modules, "recsys.steps.evaluate", fake)
    return calls


@pytest.mark.parametrize("value", ["", " ", ",", "mf_bpr,", ",mf_bpr"])
def test_models_list_empty_is_refused(recsys_home, monkeypatch, value):
    from jobs import evaluate, train

    calls = _recording_train_families(monkeypatch)
    with pytest.raises(SystemExit, match="--models"):
        train.main(["--ds", DS, "--models", value])
    assert calls == []
    calls = _recording_evaluate_families(monkeypatch)
    with pytest.raises(SystemExit, match="--models"):
        evaluate.main(["--ds", DS, "--models", value])
    assert calls == []


def test_models_list_partly_unknown_is_refused_before_training(recsys_home, monkeypatch):
    from jobs import train

    calls = _recording_train_families(monkeypatch)
    with pytest.raises(SystemExit) as exc:
        train.main(["--ds", DS, "--models", "mf_bpr,nope,ease,nada"])
    assert calls == []  # nothing trained, nothing registered
    message = str(exc.value)
    assert "'nope', 'nada'" in message and "known: " + ", ".join(model_names()) in message


def test_models_list_partly_unknown_is_refused_before_evaluating(recsys_home, monkeypatch):
    from jobs import evaluate

    calls = _recording_evaluate_families(monkeypatch)
    with pytest.raises(SystemExit, match="'nope'.*known: "):
        evaluate.main(["--ds", DS, "--models", "mf_bpr,nope"])
    assert calls == []


def test_models_list_known_names_reach_the_step(recsys_home, monkeypatch):
    from jobs import evaluate, train

    calls = _recording_train_families(monkeypatch)
    assert train.main(["--ds", DS, "--models", "mf_bpr, ease"]) == 0
    assert train.main(["--ds", DS]) == 0  # no --models: train.models
    assert calls == [["mf_bpr", "ease"], ["ease_hybrid", "mf_bpr"]]
    calls = _recording_evaluate_families(monkeypatch)
    assert evaluate.main(["--ds", DS, "--models", "ease"]) == 0
    assert calls == [["ease"]]


def test_train_step_checks_the_whole_list_before_training(recsys_home, monkeypatch):
    # Called directly (not through the job), the step refuses the list before loading anything.
    from recsys.steps import train as step

    trained: list = []
    monkeypatch.setattr(step, "load_training_set", lambda *a, **k: pytest.fail("loaded data"))
    monkeypatch.setattr(step.tracking, "train_and_log", lambda cfg, family, *a, **k: trained.append(family))
    cfg = load_config()
    for families in (["mf_bpr", "nope"], []):
        with pytest.raises(ConfigError, match="families"):
            step.train_families(cfg, DS, families)
    assert trained == []


@pytest.mark.parametrize("models,fragment", [
    ([], "no model family"),
    (["mf_bpr", "nope"], "'nope'"),
    (["mf_bpr", "mf_bpr"], "more than once"),
])
def test_train_models_in_config_are_checked(recsys_home, models, fragment):
    with pytest.raises(ConfigError, match=f"train.models(.|\n)*{fragment}"):
        load_config(overrides={"train.models": models})
