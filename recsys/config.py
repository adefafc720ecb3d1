"""Typed, frozen configuration loaded from ``conf/``.

``conf/base.yaml`` is merged with ``conf/env/<env>.yaml`` and with explicit overrides (dotted keys),
then validated. Unknown keys and wrong types are errors that name the key. ``${RECSYS_HOME}`` in
any string expands to that environment variable (default ``./var``, made absolute).
"""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

DEFAULT_CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


class ConfigError(ValueError):
    """A configuration file or override is invalid."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsConfig(_Frozen):
    home: Path
    landing: Path
    warehouse: Path

    @property
    def staging(self) -> Path:
        """Where tables are written before an atomic publish (hidden from partition discovery)."""
        return self.warehouse / "_staging"


class SparkConfig(_Frozen):
    master: str = "local[*]"
    app_prefix: str = "recsys"
    conf: dict[str, str] = Field(default_factory=dict)


class CleanConfig(_Frozen):
    event_weights: dict[str, float]
    rating_range: tuple[float, float] = (0.5, 5.0)
    max_quantity: float = 1000
    late_tolerance_hours: float = 48
    early_tolerance_hours: float = 2
    bot_max_events_per_day: int = 5000
    internal_users: tuple[str, ...] = ()
    # event_id, user_id and item_id must match this (after trimming) or the row is quarantined.
    id_pattern: str = r"^[^\x00-\x20\x7f-\xa0](?:[^\x00-\x1f\x7f-\x9f]{0,126}[^\x00-\x20\x7f-\xa0])?$"

    @property
    def event_types(self) -> tuple[str, ...]:
        return tuple(self.event_weights)


class FeaturesConfig(_Frozen):
    lookback_days: int = Field(30, ge=1)
    min_weight: float = 0.0
    # Most frequent values kept per categorical attribute (genres, occupation, ...), one column each.
    max_categories: int = Field(64, ge=1)
    # Buckets of the hashed bag of title/tag/text tokens in item features (0 = none).
    text_hash_buckets: int = Field(32, ge=0)


class TrainConfig(_Frozen):
    models: tuple[str, ...] = ("mf_bpr",)
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    epochs: int | None = Field(None, ge=1)
    validation_fraction: float = Field(0.1, ge=0.0, lt=1.0)


class EvaluateConfig(_Frozen):
    k: int = Field(10, ge=1)
    metric: str = "ndcg@10"
    tolerance: float = Field(0.02, ge=0.0)


class ScoreConfig(_Frozen):
    # The model family whose `champion` version writes the published table.
    model: str = "mf_bpr"
    top_n: int = Field(10, ge=1)
    block_size: int = Field(4096, ge=1)
    exclude_seen: bool = True
    exclude_unavailable: bool = True
    engine: Literal["local", "spark"] = "local"
    # Non-factorized models (NeuMF, Mult-VAE, ...) re-rank the top `candidates_m` items of this
    # factorized family's champion, unless the catalog is small enough to score in full.
    candidates_model: str = "mf_bpr"
    candidates_m: int = Field(200, ge=1)
    full_scoring_max_items: int = Field(5000, ge=0)


class PublishConfig(_Frozen):
    retention_partitions: int = Field(14, ge=1)


class MlflowConfig(_Frozen):
    tracking_uri: str
    artifact_location: str
    experiment: str = "recsys_nightly"
    registered_model_prefix: str = "recsys_"

    def registered_name(self, model: str) -> str:
        return f"{self.registered_model_prefix}{model}"


class Config(_Frozen):
    paths: PathsConfig
    spark: SparkConfig = SparkConfig()
    clean: CleanConfig
    features: FeaturesConfig = FeaturesConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    score: ScoreConfig = ScoreConfig()
    publish: PublishConfig = PublishConfig()
    mlflow: MlflowConfig
    # Per-family model settings from conf/models/<name>.yaml, validated by the model registry.
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("models")
    @classmethod
    def _known_models(cls, v: dict[str, dict[str, Any]], info: ValidationInfo) -> dict[str, dict[str, Any]]:
        # Model config classes live beside the models (torch); callers that only need paths
        # (the DAG's sensor) skip this with load_config(validate_models=False).
        if not (info.context or {}).get("validate_models", True):
            return v
        from recsys.models.registry import validate_model_config

        for name, params in v.items():
            validate_model_config(name, params)
        return v

    def model_params(self, name: str) -> dict[str, Any]:
        """The raw params for model family ``name`` (validated at load time)."""
        from recsys.models.registry import validate_model_config

        return validate_model_config(name, self.models.get(name, {})).model_dump()


def recsys_home() -> Path:
    return Path(os.environ.get("RECSYS_HOME", "var")).resolve()


_VAR = re.compile(r"\$\{RECSYS_HOME\}")


def _expand(node: Any, home: str) -> Any:
    if isinstance(node, str):
        return _VAR.sub(home, node)
    if isinstance(node, dict):
        return {k: _expand(v, home) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, home) for v in node]
    return node


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _apply_override(raw: dict, dotted: str, value: Any) -> None:
    node = raw
    # Spark conf keys hold dots themselves: spark.conf.spark.sql.shuffle.partitions.
    head, sep, spark_key = dotted.partition("spark.conf.")
    if not head and sep:
        raw.setdefault("spark", {}).setdefault("conf", {})[spark_key] = value
        return
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {part!r} is not a section")
    node[leaf] = value


def load_config(
    env: str | None = None,
    overrides: dict[str, Any] | None = None,
    conf_dir: Path | str | None = None,
    validate_models: bool = True,
) -> Config:
    """Load and validate the configuration.

    ``env`` defaults to ``$RECSYS_ENV`` or ``local``; ``conf_dir`` to ``$RECSYS_CONF`` or the
    repository's ``conf/``. ``overrides`` maps dotted keys (``"score.top_n"``) to values.
    ``validate_models=False`` skips validating ``conf/models`` (which imports torch); model
    params are still validated when read through :meth:`Config.model_params`.
    """
    conf_dir = Path(conf_dir or os.environ.get("RECSYS_CONF") or DEFAULT_CONF_DIR)
    env = env or os.environ.get("RECSYS_ENV", "local")
    raw = _read_yaml(conf_dir / "base.yaml")
    env_file = conf_dir / "env" / f"{env}.yaml"
    if not env_file.exists():
        raise ConfigError(f"unknown environment {env!r}: {env_file} does not exist")
    raw = _merge(raw, _read_yaml(env_file))
    models = {p.stem: _read_yaml(p) for p in sorted((conf_dir / "models").glob("*.yaml"))}
    raw["models"] = _merge(models, raw.get("models", {}))
    for key, value in (overrides or {}).items():
        _apply_override(raw, key, value)
    raw = _expand(raw, str(recsys_home()))
    try:
        return Config.model_validate(raw, context={"validate_models": validate_models})
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration ({conf_dir}, env={env}):\n{exc}") from exc
