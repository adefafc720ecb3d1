"""Model families by name: their config class and model class, imported lazily."""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

# name -> "module:ConfigClass:ModelClass" (imported on first use to keep imports light)
FAMILIES: dict[str, str] = {
    "mf_bpr": "recsys.models.mf:BPRConfig:BPRMF",
    "mf_explicit": "recsys.models.mf_explicit:ExplicitMFConfig:ExplicitMF",
    "ials": "recsys.models.ials:IALSConfig:IALS",
    "neumf": "recsys.models.neumf:NeuMFConfig:NeuMF",
    "multvae": "recsys.models.multvae:MultVAEConfig:MultVAE",
    "two_tower": "recsys.models.two_tower:TwoTowerConfig:TwoTower",
    "popularity": "recsys.models.baselines:PopularityConfig:Popularity",
    "itemknn": "recsys.models.baselines:ItemKNNConfig:ItemKNN",
    "ease": "recsys.models.baselines:EASEConfig:EASE",
    "ease_hybrid": "recsys.models.ease_hybrid:EASEHybridConfig:EASEHybrid",
    "ease_ensemble": "recsys.models.ease_ensemble:EASEEnsembleConfig:EASEEnsemble",
    "als_spark": "recsys.models.als_spark:ALSSparkConfig:ALSSpark",
}


class UnknownModelError(ValueError):
    """No model family has this name."""


def _resolve(name: str) -> tuple[type[BaseModel], type]:
    try:
        spec = FAMILIES[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}"
        ) from None
    module, cfg, cls = spec.split(":")
    mod = importlib.import_module(module)
    return getattr(mod, cfg), getattr(mod, cls)


def validate_model_config(name: str, params: dict[str, Any] | BaseModel) -> BaseModel:
    """Validate ``params`` against the family's config class (unknown keys are errors)."""
    cfg_cls, _ = _resolve(name)
    if isinstance(params, cfg_cls):
        return params
    if not isinstance(params, Mapping):
        raise ValueError(
            f"invalid config for model {name!r}: expected a mapping of settings, "
            f"got {type(params).__name__}")
    try:
        return cfg_cls.model_validate(dict(params))
    except ValidationError as exc:
        raise ValueError(f"invalid config for model {name!r}:\n{exc}") from exc


def build_model(name: str, params: dict[str, Any] | BaseModel | None = None):
    """An unfitted model of family ``name`` with validated ``params``."""
    cfg = validate_model_config(name, params or {})
    _, model_cls = _resolve(name)
    return model_cls(cfg)


def model_names() -> list[str]:
    """Every registered family name, sorted."""
    return sorted(FAMILIES)
