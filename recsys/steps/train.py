"""The train step: the day's training set minus a held-out slice (each user's latest
interaction), one MLflow run and one registered version per family.

The held-out slice is what the evaluate step (:mod:`recsys.steps.evaluate`) compares the new
version and the champion on.
"""
from __future__ import annotations

import logging
from pathlib import Path

from recsys import tracking
from recsys.config import Config, check_model_names
from recsys.data.training_set import holdout_split, load_training_set
from recsys.device import choose_device
from recsys.models.base import FitOptions

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
        results.append(result)
    return results


def _clear_checkpoints(folder: Path) -> None:
    # A finished run must not be "resumed" by the next one for the same ds.
    for f in folder.glob("*"):
        f.unlink()
