"""The train step: the day's training set minus a held-out slice (each user's latest
interaction), one MLflow run and one registered version per family.

The held-out slice is what the evaluate step (:mod:`recsys.steps.evaluate`) compares the new
version and the champion on.
"""
from __future__ import annotations

import logging
from pathlib import Path

from recsys import tracking
from recsys.config import Config
from recsys.data.training_set import holdout_split, load_training_set
from recsys.device import choose_device
from recsys.models.base import FitOptions
from recsys.models.registry import model_class
from recsys.score.vectors import drop_old_versions, write_bundle_vectors

log = logging.getLogger(__name__)


def train_families(
    cfg: Config, ds: str, families: list[str], epochs: int | None = None, progress: bool = True
) -> list[tracking.TrainResult]:
    """Train every family in ``families`` on the training set of ``ds``; register each version."""
    ts = load_training_set(cfg.paths.warehouse, ds)
    train, _ = holdout_split(ts)
    device = choose_device(cfg.train.device)
    results = []
    for family in families:
        ckpt = cfg.paths.home / "checkpoints" / ds / family
        options = FitOptions(device=device, seed=cfg.train.seed, epochs=epochs or cfg.train.epochs,
                             checkpoint_dir=ckpt, progress=progress)
        log.info("training %s on %d interactions (%d users x %d items) on %s",
                 family, len(train), train.n_users, train.n_items, device)
        result = tracking.train_and_log(
            cfg, family, train, ts.user_ids, ts.item_ids, ds=ds, options=options,
            lineage={"ds": ds, "path": str(ts.path), "rows": len(ts.interactions),
                     "train_rows": len(train), "users": train.n_users, "items": train.n_items},
            dq_summary=ts.dq_summary,
        )
        _clear_checkpoints(ckpt)
        if cfg.score.engine == "spark":
            write_vectors(cfg, family, result)
        results.append(result)
    return results


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


def _clear_checkpoints(folder: Path) -> None:
    # A finished run must not be "resumed" by the next one for the same ds.
    for f in folder.glob("*"):
        f.unlink()
