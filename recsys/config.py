"""Typed, frozen configuration loaded from ``conf/``.

``conf/base.yaml`` is merged with ``conf/env/<env>.yaml`` and with explicit overrides (dotted keys),
then validated. Unknown keys and wrong types are errors that name the key. ``${RECSYS_HOME}`` in
any string expands to that environment variable (default ``./var``, made absolute).

Nonsense is refused here, before any step does work: numbers and booleans are strict (``true`` is
not the integer 1, ``"20"`` is not a number; YAML and ``--set`` values arrive typed, so
``--set score.top_n=20`` is the int 20), ``score.top_n`` is at most :data:`MAX_TOP_N`, regular
expressions are compiled, ``evaluate.metric`` must be a metric the gate receives, model lists
name known families only, and ``env`` names a file of ``conf/env/``.
"""
from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from recsys.model_params import model_names, validate_params
from recsys.schema import STAGING

DEFAULT_CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


class ConfigError(ValueError):
    """A configuration file or override is invalid."""


# Strict numbers: a bool is not a number and a string is not parsed (YAML already typed it).
# An int is still a valid float (``max_quantity: 1000``).
Float = Annotated[float, Strict()]

# The most recommendations per user the score step writes (the DAG form's maximum too): the
# scorers hold a users x top_n block per batch and the published table grows with it.
MAX_TOP_N = 1000

# The ranking metrics evaluate computes, keyed "<name>@<k>" (recsys.metrics.ranking_metrics; a
# test holds the two equal, without importing numpy/scipy here).
RANKING_METRICS = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")

# A name of conf/env/: no path separators, no dots, nothing to escape the folder with.
_ENV_NAME = re.compile(r"[A-Za-z0-9_-]+")


def check_model_names(names: Iterable[str], what: str = "models") -> tuple[str, ...]:
    """``names`` as a tuple, or a :class:`ConfigError` when it is empty or holds unknown families.

    Every name is checked before anything is trained: an unknown name found after the first
    family was trained and registered leaves a half-done run behind.
    """
    names = tuple(names)
    known = model_names()
    if not names:
        raise ConfigError(f"{what}: no model family given; known: {', '.join(known)}")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"{what}: unknown model famil{'y' if len(unknown) == 1 else 'ies'} "
                          f"{', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"{what}: listed more than once: {', '.join(duplicated)}")
    return names


def parse_model_list(
    value: str | None, default: Iterable[str], what: str = "--models"
) -> tuple[str, ...]:
    """A comma-separated list of families (``--models mf_bpr,ease``), checked; ``None``: ``default``.

    An empty value or an empty item (``""``, ``"mf_bpr,"``) is an error, not the default.
    """
    if value is None:
        return check_model_names(default, "train.models")
    names = [n.strip() for n in value.split(",")]
    if not value.strip() or any(not n for n in names):
        raise ConfigError(f"{what} {value!r}: expected comma-separated model families; "
                          f"known: {', '.join(model_names())}")
    return check_model_names(names, what)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsConfig(_Frozen):
    home: Path
    landing: Path
    warehouse: Path

    @property
    def staging(self) -> Path:
        """Where tables are written before an atomic publish (hidden from partition discovery)."""
        return self.warehouse / STAGING


class SparkConfig(_Frozen):
    master: str = "local[*]"
    app_prefix: str = "recsys"
    conf: dict[str, str] = Field(default_factory=dict)


class CleanConfig(_Frozen):
    event_weights: dict[str, Float]
    rating_range: tuple[Float, Float] = (0.5, 5.0)
    max_quantity: Float = 1000
    late_tolerance_hours: Float = 48
    early_tolerance_hours: Float = 2
    bot_max_events_per_day: StrictInt = 5000
    internal_users: tuple[str, ...] = ()
    # event_id, user_id and item_id must match this (after trimming) or the row is quarantined.
    id_pattern: str = r"^[^\x00-\x20\x7f-\xa0](?:[^\x00-\x1f\x7f-\x9f]{0,126}[^\x00-\x20\x7f-\xa0])?$"

    @field_validator("id_pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        # Compiled now, not when Spark first evaluates it mid-job.
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return v

    @property
    def event_types(self) -> tuple[str, ...]:
        return tuple(self.event_weights)


class FeaturesConfig(_Frozen):
    lookback_days: StrictInt = Field(30, ge=1)
    min_weight: Float = 0.0
    # Most frequent values kept per categorical attribute (genres, occupation, ...), one column each.
    max_categories: StrictInt = Field(64, ge=1)
    # Buckets of the hashed bag of title/tag/text tokens in item features (0 = none).
    text_hash_buckets: StrictInt = Field(32, ge=0)


class TrainConfig(_Frozen):
    models: tuple[str, ...] = ("ease_hybrid", "mf_bpr")
    seed: StrictInt = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    epochs: StrictInt | None = Field(None, ge=1)
    validation_fraction: Float = Field(0.1, ge=0.0, lt=1.0)
    # Data-parallel ranks: N > 1 re-launches the train step under torchrun (recsys.distributed).
    processes: StrictInt = Field(1, ge=1)
    # torch intra-op threads per process: auto = the CPUs this process may use (affinity, cgroup
    # quota) shared out among the ranks on this machine, or OMP_NUM_THREADS when it is set.
    threads: Literal["auto"] | Annotated[StrictInt, Field(ge=1)] = "auto"

    @field_validator("models")
    @classmethod
    def _known_models(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        try:
            return check_model_names(v, "train.models")
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


class EvaluateConfig(_Frozen):
    k: StrictInt = Field(10, ge=1)
    # "<name>@<k>", name one of RANKING_METRICS and k this section's k: the only metrics evaluate
    # computes. Anything else would never be found in the challenger's metrics, so the gate would
    # keep the champion forever.
    metric: str = "ndcg@10"
    tolerance: Float = Field(0.02, ge=0.0)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str, info: ValidationInfo) -> str:
        k = info.data.get("k")  # absent when k itself is invalid (that error is reported)
        name, sep, at = metric.partition("@")
        if not sep or name not in RANKING_METRICS or not re.fullmatch(r"[1-9][0-9]*", at):
            raise ValueError(f"{metric!r} is not a metric evaluate computes: expected "
                             f"<name>@{k or '<k>'} with <name> one of {', '.join(RANKING_METRICS)}")
        if k is not None and int(at) != k:
            raise ValueError(f"{metric!r}: evaluate computes metrics at k={k} (evaluate.k); "
                             f"use {name}@{k} or set evaluate.k={int(at)}")
        return metric


# Item attributes business rules may name: the columns of the clean `items` catalog
# (schema.ITEM_CATALOG; a test holds the two equal without importing pyspark here), by kind.
CATALOG_ATTRIBUTES = {
    "item_id": "string", "title": "string", "genres": "list", "tags": "list",
    "year": "number", "price": "number", "available": "bool", "description": "string",
}
# Operators of a rule's condition, by attribute kind.
RULE_OPERATORS = {
    "string": ("==", "!=", "in", "not_in"),
    "number": ("==", "!=", "<", "<=", ">", ">=", "in", "not_in"),
    "bool": ("==", "!="),
    "list": ("contains", "not_contains", "contains_any", "contains_none"),
}
_LIST_VALUED = ("in", "not_in", "contains_any", "contains_none")


class RuleCondition(_Frozen):
    """``<attribute> <op> <value>`` on one catalog attribute, e.g. ``available == false``."""

    attribute: str
    op: str
    value: Any

    @field_validator("attribute")
    @classmethod
    def _known_attribute(cls, v: str) -> str:
        if v not in CATALOG_ATTRIBUTES:
            raise ValueError(f"unknown item attribute {v!r}: rules can use the catalog's "
                             f"{', '.join(CATALOG_ATTRIBUTES)}")
        return v

    @field_validator("op")
    @classmethod
    def _known_op(cls, v: str, info: ValidationInfo) -> str:
        attr = info.data.get("attribute")
        if attr is None:  # the attribute's own error is reported
            return v
        kind = CATALOG_ATTRIBUTES[attr]
        if v not in RULE_OPERATORS[kind]:
            raise ValueError(f"operator {v!r} does not apply to {attr!r} (a {kind}): use one of "
                             f"{', '.join(RULE_OPERATORS[kind])}")
        return v

    @field_validator("value")
    @classmethod
    def _typed_value(cls, v: Any, info: ValidationInfo) -> Any:
        attr, op = info.data.get("attribute"), info.data.get("op")
        if attr is None or op is None:
            return v
        kind = CATALOG_ATTRIBUTES[attr]
        many = op in _LIST_VALUED
        values = v if many else [v]
        if many and (not isinstance(v, (list, tuple)) or not v):
            raise ValueError(f"{attr} {op}: expected a non-empty list of values, got {v!r}")
        want = {"string": str, "list": str, "bool": bool, "number": (int, float)}[kind]
        for x in values:
            if not isinstance(x, want) or (kind == "number" and isinstance(x, bool)):
                raise ValueError(f"{attr} {op} {v!r}: {attr} is a {kind}, so the value must be "
                                 f"{'strings' if kind == 'list' else 'a ' + kind}")
        return tuple(values) if many else v


class ExcludeRule(RuleCondition):
    """Items matching the condition are never recommended."""


class AdjustRule(RuleCondition):
    """Boost or bury matching items: score * multiply + add (multiply > 0 keeps the order)."""

    multiply: Float = Field(1.0, gt=0)
    add: Float = 0.0


class CapRule(_Frozen):
    """At most ``max`` items per value of ``attribute`` (a list or string) in one user's list."""

    attribute: str
    max: StrictInt = Field(ge=1)

    @field_validator("attribute")
    @classmethod
    def _categorical(cls, v: str) -> str:
        kind = CATALOG_ATTRIBUTES.get(v)
        if kind not in ("list", "string"):
            ok = [a for a, k in CATALOG_ATTRIBUTES.items() if k in ("list", "string")]
            raise ValueError(f"cannot cap by {v!r}: "
                             + ("unknown item attribute" if kind is None else f"a {kind}, not categorical")
                             + f"; use one of {', '.join(ok)}")
        return v


class RulesConfig(_Frozen):
    """Business rules applied to the model's scores before the top-N is cut (recsys.score.rules).

    Attributes come from the clean ``items`` catalog (the newest partition at or before ds).
    """

    exclude: tuple[ExcludeRule, ...] = ()
    adjust: tuple[AdjustRule, ...] = ()
    cap: tuple[CapRule, ...] = ()
    # With caps: each user's best top_n * pool_factor candidates are walked greedily; a user
    # whose list is still short is walked again over the whole catalog.
    pool_factor: StrictInt = Field(3, ge=1)

    @property
    def active(self) -> bool:
        return bool(self.exclude or self.adjust or self.cap)


class ScoreConfig(_Frozen):
    # The model family whose `champion` version writes the published table.
    model: str = "ease_hybrid"
    top_n: StrictInt = Field(10, ge=1, le=MAX_TOP_N)
    block_size: StrictInt = Field(4096, ge=1)
    exclude_seen: StrictBool = True
    exclude_unavailable: StrictBool = True
    engine: Literal["local", "spark"] = "local"
    # Non-factorized models (NeuMF, Mult-VAE, ...) re-rank the top `candidates_m` items of this
    # factorized family's champion, unless the catalog is small enough to score in full.
    candidates_model: str = "mf_bpr"
    candidates_m: StrictInt = Field(200, ge=1)
    full_scoring_max_items: StrictInt = Field(5000, ge=0)
    # engine=spark: versions per model whose vectors the train step keeps in the warehouse
    # (model_vectors/; the champion's always stay).
    vectors_keep_versions: StrictInt = Field(3, ge=1)
    # Business rules (exclude / adjust / cap by catalog attribute); none by default.
    rules: RulesConfig = RulesConfig()


class ReportBounds(_Frozen):
    """How far the nightly report (recsys.evaluate.beyond) may move from the previous published
    day before publish refuses the table (``--force`` / ``force_publish`` overrides); null: off."""

    # |coverage - previous| / previous may not exceed this (0.5: within -50%..+50%).
    max_coverage_change: Float | None = Field(None, gt=0)
    # The mean Jaccard overlap of users' lists with the previous day's may not fall below this.
    min_overlap: Float | None = Field(None, ge=0, le=1)


class PublishConfig(_Frozen):
    retention_partitions: StrictInt = Field(14, ge=1)
    report_bounds: ReportBounds = ReportBounds()


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
    # Per-family hyper-parameters from conf/models/<name>.yaml, typed (recsys.model_params).
    models: dict[str, Any] = Field(default_factory=dict)

    @field_validator("models")
    @classmethod
    def _typed_models(cls, v: dict[str, Any]) -> dict[str, BaseModel]:
        return {name: validate_params(name, params) for name, params in v.items()}

    def model(self, name: str) -> BaseModel:
        """Family ``name``'s typed hyper-parameters (the family's defaults when not configured)."""
        return self.models.get(name) or validate_params(name, None)

    def model_params(self, name: str) -> dict[str, Any]:
        """Family ``name``'s hyper-parameters as plain values (for logging)."""
        return self.model(name).model_dump()


# Where everything of the embedded default lives when $RECSYS_HOME is not set.
DEFAULT_HOME = "var"


def recsys_home() -> Path:
    """``$RECSYS_HOME`` (default ``./var``), absolute."""
    return Path(os.environ.get("RECSYS_HOME", DEFAULT_HOME)).resolve()


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


def environments(conf_dir: Path | str | None = None) -> list[str]:
    """The environments of ``conf_dir`` (``conf/env/<name>.yaml``), sorted."""
    folder = Path(conf_dir or os.environ.get("RECSYS_CONF") or DEFAULT_CONF_DIR) / "env"
    return sorted(p.stem for p in folder.glob("*.yaml") if _ENV_NAME.fullmatch(p.stem))


def env_file(conf_dir: Path | str, env: str) -> Path:
    """``conf_dir/env/<env>.yaml``; ``env`` must be a plain name of one of them, never a path."""
    if not isinstance(env, str) or not _ENV_NAME.fullmatch(env) \
            or not (Path(conf_dir) / "env" / f"{env}.yaml").is_file():
        known = environments(conf_dir)
        raise ConfigError(f"unknown environment {env!r}: expected one of "
                          f"{', '.join(known) or '(none)'} (conf/env/<name>.yaml in {conf_dir})")
    return Path(conf_dir) / "env" / f"{env}.yaml"


def load_config(
    env: str | None = None,
    overrides: dict[str, Any] | None = None,
    conf_dir: Path | str | None = None,
) -> Config:
    """Load and validate the configuration.

    ``env`` (a name of ``conf/env/``, never a path) defaults to ``$RECSYS_ENV`` or ``local``;
    ``conf_dir`` to ``$RECSYS_CONF`` or the repository's ``conf/``. ``overrides`` maps dotted
    keys (``"score.top_n"``) to values.
    Model hyper-parameters are validated here too, without importing a model (or torch).
    """
    conf_dir = Path(conf_dir or os.environ.get("RECSYS_CONF") or DEFAULT_CONF_DIR)
    if env is None:
        env = os.environ.get("RECSYS_ENV") or "local"
    raw = _read_yaml(conf_dir / "base.yaml")
    raw = _merge(raw, _read_yaml(env_file(conf_dir, env)))
    models = {p.stem: _read_yaml(p) for p in sorted((conf_dir / "models").glob("*.yaml"))}
    raw["models"] = _merge(models, raw.get("models", {}))
    for key, value in (overrides or {}).items():
        _apply_override(raw, key, value)
    raw = _expand(raw, str(recsys_home()))
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration ({conf_dir}, env={env}):\n{exc}") from exc
