"""The train step: the day's training set minus a held-out slice (each user's latest
interaction), one MLflow run and one registered version per family.

The held-out slice is what the evaluate step (:mod:`recsys.steps.evaluate`) compares the new
version and the champion on.

As one rank of a data-parallel run (``train.processes: N``, :mod:`recsys.distributed`; the job
joins the process group): every rank loads the training set and trains the data-parallel
families on its shard; rank 0 alone opens the MLflow run, registers the version and writes the
checkpoints, and trains the other families by itself.
"""
from __future__ import annotations

import logging
from pathlib import Path

from recsys import distributed, tracking
from recsys.config import Config
from recsys.data.training_set import holdout_split, load_training_set
from recsys.device import choose_device
from recsys.models.base import FitOptions
from recsys.models.registry import build_model

log = logging.getLogger(__name__)


def train_families(
    cfg: Config, ds: str, families: list[str], epochs: int | None = None, progress: bool = True
) -> list[tracking.TrainResult]:
    """Train every family in ``families`` on the training set of ``ds``; register each version."""
    ts = load_training_set(cfg.paths.warehouse, ds)
    train, _ = holdout_split(ts)
    device = distributed.rank_device(choose_device(cfg.train.device))
    results = []
    for family in families:
        ckpt = cfg.paths.home / "checkpoints" / ds / family
        options = FitOptions(device=device, seed=cfg.train.seed, epochs=epochs or cfg.train.epochs,
                             checkpoint_dir=ckpt, progress=progress)
        if not distributed.is_main():
            _train_rank(cfg, family, train, options)
            continue
        log.info("training %s on %d interactions (%d users x %d items) on %s",
                 family, len(train), train.n_users, train.n_items, device)
        result = tracking.train_and_log(
            cfg, family, train, ts.user_ids, ts.item_ids, ds=ds, options=options,
            lineage={"ds": ds, "path": str(ts.path), "rows": len(ts.interactions),
                     "train_rows": len(train), "users": train.n_users, "items": train.n_items,
                     "processes": distributed.world_size()},
            dq_summary=ts.dq_summary,
        )
        _clear_checkpoints(ckpt)
        results.append(result)
    return results


def _train_rank(cfg: Config, family: str, train, options: FitOptions) -> None:
    # A rank other than 0: its share of the gradients, nothing logged (rank 0 logs and registers).
    model = build_model(family, cfg.model(family))
    if model.data_parallel:
        model.fit(train, options)


def _clear_checkpoints(folder: Path) -> None:
    # A finished run must not be "resumed" by the next one for the same ds.
    for f in folder.glob("*"):
        f.unlink()
