"""The score step: every user of the day's training set, scored with the version that serves the
day (see :func:`choose_version`); the top-N table is staged for the publish step
(:mod:`recsys.steps.publish`)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from pathlib import Path

import numpy as np

from recsys.config import Config
from recsys.data.training_set import load_training_set
from recsys.device import choose_device, configure_threads
from recsys.models.registry import model_class
from recsys.score import coldstart
from recsys.score._sink import Provenance
from recsys.score.engine import stage, write_topn
from recsys.score.publish import published_manifest
from recsys.score.rules import Rules
from recsys.tracking import (
    LoadedModel,
    champion_version,
    list_versions,
    load_version,
    version_info,
)

log = logging.getLogger(__name__)

RESCORE_HINT = "pass --rescore-with-champion to score it with the current champion instead"


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    """The registered version that scores a day, and why (logged, and kept in the manifest's
    ``scoring.models``)."""

    family: str
    name: str
    version: str
    rule: str  # served | champion | backfill | rescore_with_champion
    why: str

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def choose_version(cfg: Config, family: str, ds: str, rescore_with_champion: bool = False,
                   served: dict | None = None) -> ModelChoice:
    """Which version of ``family`` scores ``ds``; ``served`` is the ``{name, version, run_id}``
    that scored the day's published partition, if there is one. In order:

    1. ``rescore_with_champion``: the current champion, whatever served the day before;
    2. ``served`` (a rerun of a published day): that same version, so a rerun reproduces the day;
    3. the champion, when it was trained on data up to ``ds`` (its ``ds`` tag <= ``ds``: the
       nightly run, or a retry of a day that failed before publishing);
    4. otherwise (a backfill of a day older than the champion's training data): the newest
       version trained on data up to ``ds`` that the gate promoted, i.e. the version that was
       champion after that day's nightly run. None: refuse (``LookupError``), never score a past
       day with a model trained on its future unless told to.
    """
    name = cfg.mlflow.registered_name(family)
    if served is not None and served.get("name") != name:
        log.warning("ds=%s was published by %s v%s, not by %s: scoring with %s as asked",
                    ds, served.get("name"), served.get("version"), name, name)
        served = None
    champ = champion_version(cfg, family)
    if rescore_with_champion:
        if champ is None:
            raise LookupError(_no_champion(name, family))
        was = f" instead of v{served['version']}, which served the published partition" if served else ""
        return ModelChoice(family, name, champ, "rescore_with_champion",
                           f"--rescore-with-champion: the champion v{champ}{was}")
    if served is not None:
        info = version_info(cfg, family, served["version"])
        if info is None or (served.get("run_id") and info.run_id != served["run_id"]):
            raise LookupError(
                f"ds={ds} was published by {name} v{served['version']} (run {served.get('run_id')}), "
                f"which the registry no longer holds" + (f" (its v{info.version} is run {info.run_id})"
                                                         if info else "") + f"; {RESCORE_HINT}")
        return ModelChoice(family, name, info.version, "served",
                           f"rerun of ds={ds}: v{info.version} (trained on ds={info.ds}) served its "
                           f"published partition")
    if champ is None:
        raise LookupError(_no_champion(name, family))
    champ_info = version_info(cfg, family, champ)
    champ_ds = champ_info.ds if champ_info else None
    if champ_ds is None or champ_ds <= ds:
        return ModelChoice(family, name, champ, "champion",
                           f"first scoring of ds={ds}: the champion v{champ} (trained on ds={champ_ds})")
    earlier = [v for v in list_versions(cfg, family) if v.gate == "promoted" and v.ds and v.ds <= ds]
    if not earlier:
        raise LookupError(
            f"backfill of ds={ds}: the champion {name} v{champ} was trained on later data "
            f"(ds={champ_ds}) and no version trained on data up to ds={ds} ever passed the gate; "
            f"{RESCORE_HINT}")
    pick = max(earlier, key=lambda v: (v.ds, int(v.version)))
    return ModelChoice(family, name, pick.version, "backfill",
                       f"backfill of ds={ds}: the champion v{champ} was trained on later data "
                       f"(ds={champ_ds}); v{pick.version} (trained on ds={pick.ds}) is the newest "
                       f"version trained on data up to ds={ds} that the gate promoted")


def _no_champion(name: str, family: str) -> str:
    return (f"no version of {name} has the alias 'champion': train and evaluate {family} first "
            f"(score.model is the family that publishes, so train.models, or the run's models, "
            f"must include {family}), or score with --model <a family that has a champion>")


def _served(manifest: dict | None, key: str) -> dict | None:
    """``{name, version, run_id}`` of the model (``key="model"``) or the re-ranking candidates
    model (``key="candidates"``) that scored a published partition."""
    if manifest is None:
        return None
    if key == "model":
        if manifest.get("model_name") is None or manifest.get("model_version") is None:
            return None
        return {"name": manifest["model_name"], "version": str(manifest["model_version"]),
                "run_id": manifest.get("mlflow_run_id")}
    return ((manifest.get("scoring") or {}).get("models") or {}).get(key)


def _load(cfg: Config, choice: ModelChoice) -> LoadedModel:
    log.info("scoring with %s v%s [%s]: %s", choice.name, choice.version, choice.rule, choice.why)
    return load_version(cfg, choice.family, choice.version)


def _candidates(cfg: Config, loaded: LoadedModel, n_items: int, ds: str, rescore_with_champion: bool,
                manifest: dict | None, used: dict):
    """A factorized model in the same id space as ``loaded``, when re-ranking is needed."""
    if loaded.model.factorized or n_items <= cfg.score.full_scoring_max_items:
        return None
    choice = choose_version(cfg, cfg.score.candidates_model, ds, rescore_with_champion,
                            _served(manifest, "candidates"))
    cand = _load(cfg, choice)
    used["candidates"] = {"name": cand.name, "version": cand.version, "run_id": cand.run_id,
                          "rule": choice.rule, "why": choice.why}
    same = (np.array_equal(cand.bundle.user_ids, loaded.bundle.user_ids)
            and np.array_equal(cand.bundle.item_ids, loaded.bundle.item_ids))
    if not same:
        raise ValueError(f"candidate model {cand.name} v{cand.version} was trained on other id "
                         f"maps than {loaded.name} v{loaded.version}; train both on the same ds")
    return cand.model


def _used(choice: ModelChoice, run_id: str) -> dict[str, str]:
    return {"name": choice.name, "version": choice.version, "run_id": run_id, "rule": choice.rule,
            "why": choice.why}


def score_ds(cfg: Config, ds: str, family: str | None = None, generated_at: dt.datetime | None = None,
             on_block=None, rescore_with_champion: bool = False) -> Path:
    """Score every user of the training set of ``ds`` with the version of ``family`` that serves
    ``ds`` (:func:`choose_version`: on a rerun of a published day, the version that served it);
    stage the table (see :func:`recsys.score.staging.pending_path`) and return its folder."""
    family = family or cfg.score.model
    manifest = published_manifest(cfg.paths.warehouse, ds)
    choice = choose_version(cfg, family, ds, rescore_with_champion, _served(manifest, "model"))
    # generated_at is provenance only: it never decides what is read.
    generated_at = generated_at or dt.datetime.now(dt.timezone.utc)
    # Business rules read the clean item catalog (the newest partition at or before ds).
    rules = Rules.load(cfg.score.rules, cfg.paths.warehouse, ds)
    rules_ds = None if rules is None else rules.catalog_ds
    if cfg.score.engine == "spark":
        return _score_spark(cfg, ds, choice, generated_at, rules)
    loaded = _load(cfg, choice)
    used = {"model": _used(choice, loaded.run_id)}
    prov = Provenance(loaded.name, str(loaded.version), loaded.run_id, generated_at)
    log.info("scoring ds=%s with %s v%s (engine local)", ds, loaded.name, loaded.version)
    # The single-node engine reads the day's training set here; the Spark one on its executors.
    ts = load_training_set(cfg.paths.warehouse, ds)
    device = choose_device(cfg.train.device)
    configure_threads(cfg.train.threads)
    cand = _candidates(cfg, loaded, len(loaded.bundle.item_ids), ds, rescore_with_champion, manifest, used)
    return stage(cfg.paths.warehouse, ds, lambda out: {**write_topn(
        loaded.bundle, ts, prov, out, cfg.score, device, candidates=cand, on_block=on_block, rules=rules),
        "models": used, "rules_catalog_ds": rules_ds})


def _score_spark(cfg: Config, ds: str, choice: ModelChoice, generated_at: dt.datetime,
                 rules: Rules | None = None) -> Path:
    """``score.engine: spark``: executors read the user vectors (written by the train step) and
    the training set from the warehouse; nothing per user passes through this driver.

    The driver does not load the version's bundle when its vectors are in the warehouse: the
    bundle holds every user's vector (and a model's whole state). It loads it only (a) to write
    missing vectors once, for a version trained before the train step wrote them, and (b) for a
    hybrid family's content fallback, and then only when some users have no history at all.
    """
    # Spark is loaded only for this engine.
    from recsys.score.spark_score import score_warehouse
    from recsys.score.vectors import ensure_vectors, read_info, vectors_path
    from recsys.spark import get_spark

    wh = cfg.paths.warehouse
    info = version_info(cfg, choice.family, choice.version)  # tags only, nothing downloaded
    if info is None:
        raise LookupError(f"{choice.name} v{choice.version} is not in the registry")
    cls = model_class(choice.family)
    if not cls.factorized:
        raise ValueError(f"score.engine=spark needs a factorized model; {choice.family} is not "
                         "(use score.engine=local, which re-ranks candidates)")
    log.info("scoring with %s v%s [%s]: %s", choice.name, choice.version, choice.rule, choice.why)
    vectors = vectors_path(wh, choice.name, choice.version)
    held: list[LoadedModel] = []

    def loaded() -> LoadedModel:
        if not held:
            held.append(load_version(cfg, choice.family, choice.version))
        return held[0]

    if (read_info(vectors) or {}).get("run_id") != info.run_id:
        model = loaded()  # missing or stale vectors: written once from the bundle, on this driver
        vectors = ensure_vectors(wh, model.name, model.version, model.run_id, model.bundle)
    content = (lambda: loaded().model) if coldstart.supports_content(cls) else None
    used = {"model": _used(choice, info.run_id)}
    prov = Provenance(choice.name, str(choice.version), info.run_id, generated_at)
    log.info("scoring ds=%s with %s v%s (engine spark, vectors %s)", ds, choice.name, choice.version,
             vectors)
    spark = get_spark("score", cfg.spark)
    return stage(wh, ds, lambda out: {
        **score_warehouse(spark, wh, ds, vectors, prov, out, cfg.score, content_model=content,
                          rules=rules),
        "models": used, "rules_catalog_ds": None if rules is None else rules.catalog_ds})
