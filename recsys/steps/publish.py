"""The publish step: validate the staged top-N table of a day against its training set, publish it
atomically, apply retention. Loads neither torch nor Spark (but for ``register_table``)."""
from __future__ import annotations

from recsys.config import Config
from recsys.data.training_set import load_training_set
from recsys.score.publish import (
    Check,
    Reference,
    publish,
    reference_from_training_set,
    register_external_table,
    validate_staged,
)
from recsys.score.validate import TableRejected

__all__ = ["TableRejected", "publish_ds", "validate_ds"]


def _reference(cfg: Config, ds: str) -> Reference:
    ts = load_training_set(cfg.paths.warehouse, ds)
    return reference_from_training_set(ts, cfg.score.exclude_seen, cfg.score.exclude_unavailable)


def validate_ds(cfg: Config, ds: str, force: bool = False) -> list[Check]:
    """Run publish's checks on the staged table of ``ds``; publish nothing. Returns the checks."""
    return validate_staged(cfg.paths.warehouse, ds, cfg.score.top_n, _reference(cfg, ds), force)[2]


def publish_ds(cfg: Config, ds: str, force: bool = False, register_table: bool = False) -> dict:
    """Validate the staged table of ``ds`` against its training set and publish it."""
    manifest = publish(cfg.paths.warehouse, ds, top_n=cfg.score.top_n,
                       keep=cfg.publish.retention_partitions, reference=_reference(cfg, ds),
                       force=force)
    if register_table:
        from recsys.spark import (
            get_spark,  # the only Spark use of this step, on request
        )

        register_external_table(get_spark("register-table", cfg.spark), cfg.paths.warehouse)
    return manifest
