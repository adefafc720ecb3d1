"""Typed, frozen configuration: unknown keys and wrong types are errors that name the key."""
from __future__ import annotations

import pytest

from recsys.config import ConfigError, load_config


def test_defaults_expand_recsys_home(recsys_home):
    cfg = load_config()
    assert cfg.paths.landing == recsys_home / "landing"
    assert cfg.mlflow.tracking_uri == f"sqlite:///{recsys_home}/mlflow/mlflow.db"
    assert cfg.mlflow.tracking_uri.startswith("sqlite:////")  # absolute path: four slashes


def test_overrides_are_typed_and_dotted(recsys_home):
    cfg = load_config(overrides={"score.top_n": 25, "spark.conf.spark.sql.shuffle.partitions": "3"})
    assert cfg.score.top_n == 25
    assert cfg.spark.conf["spark.sql.shuffle.partitions"] == "3"


@pytest.mark.parametrize("key,value,fragment", [
    ("score.top_nn", 5, "top_nn"),                 # a typo is an error, not a silent None
    ("score.top_n", "many", "top_n"),              # wrong type
    ("score.top_n", 0, "top_n"),                   # out of range
    ("models.mf_bpr.factorz", 8, "factorz"),       # unknown model hyper-parameter
    ("train.device", "tpu", "device"),
])
def test_bad_values_name_the_key(recsys_home, key, value, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(overrides={key: value})


def test_config_is_frozen(recsys_home):
    cfg = load_config()
    with pytest.raises(Exception):
        cfg.score.top_n = 3


def test_unknown_environment_is_an_error(recsys_home):
    with pytest.raises(ConfigError, match="unknown environment"):
        load_config(env="staging")


def test_config_load_validates_model_params_without_importing_torch(recsys_home):
    # The hyper-parameter classes sit on the ground floor (recsys.model_params): the DAG's sensor
    # and every step load the whole config, model settings validated, without loading torch.
    import subprocess
    import sys

    code = ("import sys; from recsys.config import load_config; cfg = load_config(); "
            "assert cfg.model('mf_bpr').factors >= 1; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
