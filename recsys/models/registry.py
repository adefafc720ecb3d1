"""Model families by name: the model class of each, imported lazily (torch loads on first use).

The hyper-parameter classes live in :mod:`recsys.model_params` (validated with the config).
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from recsys.model_params import (
    PARAMS,
    UnknownModelError,
    model_names,
    params_class,
    validate_params,
)

# name -> "module:ModelClass" (imported on first use to keep imports light)
FAMILIES: dict[str, str] = {
    "mf_bpr": "recsys.models.mf:BPRMF",
    "mf_explicit": "recsys.models.mf_explicit:ExplicitMF",
    "ials": "recsys.models.ials:IALS",
    "neumf": "recsys.models.neumf:NeuMF",
    "multvae": "recsys.models.multvae:MultVAE",
    "two_tower": "recsys.models.two_tower:TwoTower",
    "popularity": "recsys.models.baselines:Popularity",
    "itemknn": "recsys.models.baselines:ItemKNN",
    "ease": "recsys.models.baselines:EASE",
    "ease_hybrid": "recsys.models.ease_hybrid:EASEHybrid",
    "ease_ensemble": "recsys.models.ease_ensemble:EASEEnsemble",
    "als_spark": "recsys.models.als_spark:ALSSpark",
}
assert FAMILIES.keys() == PARAMS.keys(), "every family needs a model class and a params class"

__all__ = ["FAMILIES", "UnknownModelError", "build_model", "model_class", "model_names",
           "validate_model_config"]


def model_class(name: str) -> type:
    params_class(name)  # unknown names fail here, with the list of known ones
    module, cls = FAMILIES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def validate_model_config(name: str, params: Mapping[str, Any] | BaseModel | None) -> BaseModel:
    """Family ``name``'s typed hyper-parameters (see :func:`recsys.model_params.validate_params`)."""
    return validate_params(name, params)


def build_model(name: str, params: Mapping[str, Any] | BaseModel | None = None):
    """An unfitted model of family ``name``; ``params`` typed (as in ``Config.models``) or raw."""
    return model_class(name)(validate_params(name, params))
