"""The train step: the day's training set minus a held-out slice (each user's latest
interaction), one MLflow run and one registered version per family.

A validation set (``train.validation_fraction`` of each user's rows, seeded) is carved from the
rest and passed to the families that stop early on it: they log ``val_ndcg@10`` per epoch, stop
after ``patience`` epochs without improvement and keep the best epoch's weights.

The held-out slice is what the evaluate step (:mod:`recsys.steps.evaluate`) compares the new
version and the champion on.

As one rank of a data-parallel run (``train.processes: N``, :mod:`recsys.distributed`; the job
joins the process group): every rank loads the training set and trains the data-parallel
families on its shard; rank 0 alone opens the MLflow run, registers the version and writes the
checkpoints, and trains the other families by itself.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from recsys import distributed, tracking
from recsys.config import Config, check_model_names
from recsys.data.training_set import holdout_split, load_training_set
from recsys.device import choose_device, configure_threads
from recsys.interactions import Interactions, validation_split
from recsys.models.base import FitOptions
from recsys.models.registry import build_model, model_class
from recsys.score.vectors import drop_old_versions, write_bundle_vectors

log = logging.getLogger(__name__)


def train_families(
    cfg: Config, ds: str, families: list[str], epochs: int | None = None, progress: bool = True
) -> list[tracking.TrainResult]:
    """Train every family in ``families`` on the training set of ``ds``; register each version.

    The whole list is checked first (:class:`recsys.config.ConfigError` when it is empty or names
    an unknown family): nothing is loaded, trained or registered for a list that cannot finish.
    """
    families = list(check_model_names(families, "families"))
    ts = load_training_set(cfg.paths.warehouse, ds)
    train, _ = holdout_split(ts)
    fit, validation = carve_validation(train, cfg.train.validation_fraction, cfg.train.seed)
    device = distributed.rank_device(choose_device(cfg.train.device))
    configure_threads(cfg.train.threads)
    results = []
    for family in families:
        ckpt = cfg.paths.home / "checkpoints" / ds / family
        options = FitOptions(device=device, seed=cfg.train.seed, epochs=epochs or cfg.train.epochs,
                             checkpoint_dir=ckpt, progress=progress, validation=validation)
        if not distributed.is_main():
            _train_rank(cfg, family, fit, options)
            continue
        # Rank 0 only: another rank would start an application of its own that runs nothing.
        options = dataclasses.replace(options, spark=_spark_for(cfg, family))
        log.info("training %s on %d interactions (%d users x %d items; %d validation rows) on %s",
                 family, len(fit), fit.n_users, fit.n_items, len(validation or ()), device)
        result = tracking.train_and_log(
            cfg, family, fit, ts.user_ids, ts.item_ids, ds=ds, options=options,
            lineage={"ds": ds, "path": str(ts.path), "rows": len(ts.interactions),
                     "train_rows": len(fit), "validation_rows": len(validation or ()),
                     "users": fit.n_users, "items": fit.n_items,
                     "processes": distributed.world_size()},
            dq_summary=ts.dq_summary,
        )
        _clear_checkpoints(ckpt)
        if cfg.score.engine == "spark":
            write_vectors(cfg, family, result)
        results.append(result)
    return results


def _spark_for(cfg: Config, family: str):
    """The pipeline's SparkSession (``spark:`` of the configuration) for a family that trains in
    Spark (``needs_spark``), else None: on a cluster its jobs run there, as every Spark step's."""
    if not getattr(model_class(family), "needs_spark", False):
        return None
    from recsys.spark import get_spark

    return get_spark(f"train-{family}", cfg.spark)


def carve_validation(train: Interactions, fraction: float, seed: int
                     ) -> tuple[Interactions, Interactions | None]:
    """``(fit, validation)``: ``fraction`` of each user's rows (seeded) held out for early
    stopping; ``(train, None)`` when the fraction is 0 or nothing would be left to validate on."""
    if fraction <= 0:
        return train, None
    fit, validation = validation_split(train, fraction=fraction, seed=seed)
    return (fit, validation) if len(validation) else (train, None)


def write_vectors(cfg: Config, family: str, result: tracking.TrainResult) -> Path | None:
    """A factorized version's vectors into the warehouse, for the Spark scorer's executors
    (:mod:`recsys.score.vectors`); None for other families.

    They are read back from the registered artifact, so they are exactly what loading the
    version gives. Older versions' vectors beyond ``score.vectors_keep_versions`` are dropped
    (never the champion's). A failure is logged, not raised: the version is registered already,
    and the score step writes missing vectors itself (once, on its driver).
    """
    if getattr(model_class(family), "factorized", False) is not True:
        return None
    try:
        loaded = tracking.load_version(cfg, family, result.version)
        path = write_bundle_vectors(cfg.paths.warehouse, result.name, result.version, result.run_id,
                                    loaded.bundle)
        dropped = drop_old_versions(cfg.paths.warehouse, result.name, cfg.score.vectors_keep_versions,
                                    protect={result.version, tracking.champion_version(cfg, family)})
    except Exception:  # noqa: BLE001 - see the docstring
        log.exception("writing the vectors of %s v%s failed; the score step will write them",
                      result.name, result.version)
        return None
    if dropped:
        log.info("dropped the vectors of %s versions %s", result.name, ", ".join(dropped))
    return path


def _train_rank(cfg: Config, family: str, train, options: FitOptions) -> None:
    # A rank other than 0: its share of the gradients, nothing logged (rank 0 logs and registers).
    model = build_model(family, cfg.model(family))
    if model.data_parallel:
        model.fit(train, options)


def _clear_checkpoints(folder: Path) -> None:
    # A finished run must not be "resumed" by the next one for the same ds.
    for f in folder.glob("*"):
        f.unlink()
