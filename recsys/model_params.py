"""The typed hyper-parameters of every model family: ``conf/models/<family>.yaml``, validated once.

They sit on the ground floor, beside :mod:`recsys.config`, so that loading the configuration
validates every family's settings (unknown keys and bad values are errors that name the key)
without importing a model, torch or Spark. ``Config.models[family]`` holds the typed object;
:func:`recsys.models.registry.build_model` takes it as is.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class UnknownModelError(ValueError):
    """No model family has this name."""


# -- mf ----------------------------------------------------------------------------------------
class BPRConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    factors: int = Field(200, ge=1)
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(1024, ge=1)  # triples applied at once (their updates summed)
    lr: float = Field(0.02, gt=0)  # plain SGD step per triple
    weight_decay: float = Field(0.02, ge=0)  # L2 per triple on the rows it touches
    patience: int = Field(10, ge=1)


# -- mf_explicit -------------------------------------------------------------------------------
class ExplicitMFConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    solver: str = Field("gibbs", pattern="^(gibbs|sgd)$")
    factors: int = Field(10, ge=1)
    # gibbs: sweeps in all, the first burn_in discarded, at most keep factor samples stored.
    sweeps: int = Field(250, ge=1)
    burn_in: int = Field(20, ge=0)
    keep: int = Field(64, ge=1)
    # gibbs: SVD++-style implicit term (which items a user rated, which users rated an item).
    implicit: bool = True
    # sgd only from here on
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(1024, ge=1)
    lr: float = Field(0.005, gt=0)
    # L2 on the factors and biases touched by each rating (scaled per sample, as SGD-MF does).
    reg: float = Field(0.05, ge=0)
    init_std: float = Field(0.01, gt=0)
    patience: int = Field(3, ge=1)


# -- ials --------------------------------------------------------------------------------------
class IALSConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    factors: int = Field(64, ge=1)
    epochs: int = Field(15, ge=1)
    alpha: float = Field(1.0, ge=0)
    unobserved_weight: float = Field(0.3, gt=0)
    reg: float = Field(0.03, ge=0)
    reg_exponent: float = Field(1.0, ge=0)
    init_std: float = Field(0.1, gt=0)
    # Conjugate-gradient steps per half step (implicit's default 3); 0: exact batched solves.
    cg_steps: int = Field(3, ge=0)
    patience: int = Field(3, ge=1)


# -- neumf -------------------------------------------------------------------------------------
class NeuMFConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    factors: int = Field(32, ge=1)  # GMF size; the MLP's embeddings are 2x this
    mlp_layers: tuple[int, ...] = (64, 32, 16)
    epochs: int = Field(30, ge=1)
    negatives: int = Field(4, ge=1)
    batch_size: int = Field(4096, ge=1)
    lr: float = Field(0.001, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    patience: int = Field(3, ge=1)
    average_last: int = Field(20, ge=0)  # fitted weights: mean over the last N epochs' (0: last)


# -- multvae -----------------------------------------------------------------------------------
class MultVAEConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden: int = Field(600, ge=1)
    latent: int = Field(200, ge=1)
    dropout: float = Field(0.7, ge=0, lt=1)
    beta_max: float = Field(0.5, ge=0)
    anneal_steps: int = Field(200, ge=1)  # optimizer steps to reach beta_max
    epochs: int = Field(200, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(0.001, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    patience: int = Field(20, ge=1)
    # "mlp": latent -> hidden -> items (Liang et al.); "linear": latent -> items (RecVAE).
    decoder: str = Field("linear", pattern="^(mlp|linear)$")
    # > 0: each user's KL weight is gamma x their history length (RecVAE), replacing beta_max.
    gamma: float = Field(0.005, ge=0)


# -- two_tower ---------------------------------------------------------------------------------
class TwoTowerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dim: int = Field(64, ge=1)
    hidden: int = Field(128, ge=1)
    id_dropout: float = Field(0.3, ge=0, le=1)
    temperature: float = Field(0.2, gt=0)
    negatives: int = Field(2048, ge=1)  # uniform negatives shared by a batch; >= n_items: all items
    epochs: int = Field(15, ge=1)
    batch_size: int = Field(1024, ge=1)
    lr: float = Field(0.01, gt=0)
    weight_decay: float = Field(1e-6, ge=0)
    patience: int = Field(5, ge=1)


# -- baselines ---------------------------------------------------------------------------------
class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PopularityConfig(_Cfg):
    # "count": distinct users per item; "weight": summed interaction weight.
    by: str = Field("count", pattern="^(count|weight)$")


class ItemKNNConfig(_Cfg):
    neighbors: int = Field(100, ge=1)
    shrinkage: float = Field(10.0, ge=0)


class EASEConfig(_Cfg):
    l2: float = Field(500.0, gt=0)


# -- ease_hybrid -------------------------------------------------------------------------------
class EASEHybridConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    l2: float = Field(500.0, gt=0)
    item_feature_weight: float = Field(3.0, ge=0)
    user_feature_weight: float = Field(1.0, ge=0)
    activity_power: float = Field(0.25, ge=0)


# -- ease_ensemble -----------------------------------------------------------------------------
class EASEEnsembleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    item_side: EASEHybridConfig = EASEHybridConfig()
    user_l2: float = Field(200.0, gt=0)
    activity_power: float = Field(0.25, ge=0)
    candidates: int = Field(100, ge=1)
    validation_fraction: float = Field(0.2, gt=0, lt=1)
    blend_l2: float = Field(1e-3, ge=0)
    # Four weights learned from fewer users than this are noise: keep the item side alone.
    min_validation_users: int = Field(100, ge=1)
    # The user side inverts an n_users x n_users matrix; above this it is left out (weight 0).
    max_users: int = Field(20000, ge=2)


# -- als_spark ---------------------------------------------------------------------------------
class ALSSparkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    factors: int = Field(64, ge=1)
    max_iter: int = Field(15, ge=1)
    reg: float = Field(0.1, ge=0)
    alpha: float = Field(1.0, ge=0)
    implicit: bool = True
    blocks: int = Field(2, ge=1)
    # Only when the family is fitted outside the pipeline (benchmarks, library use) without a
    # session: the train step hands it the pipeline's own (`spark.master`, `spark.conf`).
    spark_master: str = "local[2]"


# family name -> its hyper-parameter class (the model class is in recsys.models.registry)
PARAMS: dict[str, type[BaseModel]] = {
    "mf_bpr": BPRConfig,
    "mf_explicit": ExplicitMFConfig,
    "ials": IALSConfig,
    "neumf": NeuMFConfig,
    "multvae": MultVAEConfig,
    "two_tower": TwoTowerConfig,
    "popularity": PopularityConfig,
    "itemknn": ItemKNNConfig,
    "ease": EASEConfig,
    "ease_hybrid": EASEHybridConfig,
    "ease_ensemble": EASEEnsembleConfig,
    "als_spark": ALSSparkConfig,
}


def model_names() -> list[str]:
    """Every model family name, sorted."""
    return sorted(PARAMS)


def params_class(name: str) -> type[BaseModel]:
    try:
        return PARAMS[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model family {name!r}; known: {', '.join(model_names())}") from None


def validate_params(name: str, params: Mapping[str, Any] | BaseModel | None) -> BaseModel:
    """``params`` as family ``name``'s typed hyper-parameters (unknown keys are errors)."""
    cls = params_class(name)
    if isinstance(params, cls):
        return params
    params = {} if params is None else params
    if not isinstance(params, Mapping):
        raise ValueError(
            f"invalid config for model {name!r}: expected a mapping of settings, "
            f"got {type(params).__name__}")
    try:
        return cls.model_validate(dict(params))
    except ValidationError as exc:
        raise ValueError(f"invalid config for model {name!r}:\n{exc}") from exc
