"""Bad input fails before training, with an error that names the problem."""
from __future__ import annotations

import numpy as np
import pytest

from recsys.models import FitOptions, Interactions, TrainingDataError, build_model
from recsys.models.registry import FAMILIES, UnknownModelError, validate_model_config

TRAINABLE = [n for n in sorted(FAMILIES) if n != "als_spark"]  # als_spark checks in _remember too


def _inter(users, items, n_users=3, n_items=3, rating=None) -> Interactions:
    return Interactions(np.array(users, np.int64), np.array(items, np.int64),
                        np.ones(len(users), np.float32), n_users, n_items, rating=rating)


@pytest.mark.parametrize("name", TRAINABLE)
@pytest.mark.parametrize("data, message", [
    (_inter([], []), "empty"),
    (_inter([0, 0], [0, 1]), "single user"),
    (_inter([0, 1], [2, 2]), "single item"),
])
def test_untrainable_data_is_rejected(name, data, message):
    with pytest.raises(TrainingDataError, match=message):
        build_model(name).fit(data, FitOptions(epochs=1))


def test_indices_out_of_range_are_rejected():
    with pytest.raises(TrainingDataError, match="item_idx outside"):
        _inter([0, 1], [0, 3])


def test_explicit_mf_needs_ratings():
    with pytest.raises(TrainingDataError, match="explicit ratings"):
        build_model("mf_explicit").fit(_inter([0, 1], [0, 1]), FitOptions(epochs=1))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_unknown_config_key_is_an_error(name):
    with pytest.raises(ValueError, match="factorz"):
        validate_model_config(name, {"factorz": 8})


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_wrong_type_is_an_error(name):
    cfg_cls = type(validate_model_config(name, {}))
    field = next(iter(cfg_cls.model_fields))
    with pytest.raises(ValueError, match=field):
        validate_model_config(name, {field: {"not": "a value"}})


def test_config_must_be_a_mapping():
    with pytest.raises(ValueError, match="expected a mapping"):
        validate_model_config("ease", "l2=5")


def test_unknown_family_lists_the_known_ones():
    with pytest.raises(UnknownModelError, match="ease"):
        build_model("easy")


def test_conf_files_validate():
    from pathlib import Path

    import yaml

    conf = Path(__file__).resolve().parents[2] / "conf" / "models"
    assert {p.stem for p in conf.glob("*.yaml")} == set(FAMILIES)
    for path in conf.glob("*.yaml"):
        assert validate_model_config(path.stem, yaml.safe_load(path.read_text())) == \
            validate_model_config(path.stem, {})  # the file states the defaults
