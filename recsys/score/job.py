"""The score and publish steps as the jobs call them: config in, staged/published table out."""
from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import numpy as np

from recsys.config import Config

log = logging.getLogger(__name__)



def _candidates(cfg: Config, loaded, options, n_items: int):
    """A factorized model in the same id space as ``loaded``, when re-ranking is needed."""
    if loaded.model.factorized or n_items <= options.full_scoring_max_items:
        return None
    from recsys.train.run import load_model

    cand = load_model(cfg, cfg.score.candidates_model)
    same = (np.array_equal(cand.bundle.user_ids, loaded.bundle.user_ids)
            and np.array_equal(cand.bundle.item_ids, loaded.bundle.item_ids))
    if not same:
        raise ValueError(f"candidate model {cand.name} v{cand.version} was trained on other id "
                         f"maps than {loaded.name} v{loaded.version}; train both on the same ds")
    return cand.model


def score_ds(cfg: Config, ds: str, family: str | None = None, generated_at: dt.datetime | None = None,
             on_block=None) -> Path:
    """Score every user of the training set of ``ds`` with ``family``'s champion; stage the
    table (see :func:`recsys.score.run.pending_path`) and return its folder."""
    # Imported here so that publish (this module's other half) never loads torch or MLflow.
    from recsys.data.training_set import load_training_set
    from recsys.score._sink import Provenance
    from recsys.score.run import stage, write_topn
    from recsys.score.topn import ScoreOptions
    from recsys.train.device import choose_device
    from recsys.train.run import load_model

    family = family or cfg.score.model
    ts = load_training_set(cfg.paths.warehouse, ds)
    loaded = load_model(cfg, family)
    options = ScoreOptions.from_config(cfg.score)
    # generated_at is provenance only: it never decides what is read.
    prov = Provenance(loaded.name, str(loaded.version), loaded.run_id,
                      generated_at or dt.datetime.now(dt.timezone.utc))
    log.info("scoring %d users x %d items with %s v%s (engine %s)", len(ts.user_ids),
             len(loaded.bundle.item_ids), loaded.name, loaded.version, cfg.score.engine)
    if cfg.score.engine == "spark":
        from recsys.score.spark_score import write_topn_spark
        from recsys.spark import get_spark

        spark = get_spark("score", cfg.spark)
        return stage(cfg.paths.warehouse, ds,
                     lambda out: write_topn_spark(spark, loaded.bundle, ts, prov, out, options))
    device = choose_device(cfg.train.device)
    cand = _candidates(cfg, loaded, options, len(loaded.bundle.item_ids))
    return stage(cfg.paths.warehouse, ds, lambda out: write_topn(
        loaded.bundle, ts, prov, out, options, device, candidates=cand, on_block=on_block))


def _reference(cfg: Config, ds: str):
    from recsys.data.training_set import load_training_set
    from recsys.publish import reference_from_training_set

    ts = load_training_set(cfg.paths.warehouse, ds)
    return reference_from_training_set(ts, cfg.score.exclude_seen, cfg.score.exclude_unavailable)


def validate_ds(cfg: Config, ds: str, force: bool = False) -> list:
    """Run publish's checks on the staged table of ``ds``; publish nothing. Returns the checks."""
    from recsys.publish import validate_staged

    return validate_staged(cfg.paths.warehouse, ds, cfg.score.top_n, _reference(cfg, ds), force)[2]


def publish_ds(cfg: Config, ds: str, force: bool = False, register_table: bool = False) -> dict:
    """Validate the staged table of ``ds`` against its training set and publish it."""
    from recsys.publish import publish, register_external_table

    ref = _reference(cfg, ds)
    manifest = publish(cfg.paths.warehouse, ds, top_n=cfg.score.top_n,
                       keep=cfg.publish.retention_partitions, reference=ref, force=force)
    if register_table:
        from recsys.spark import get_spark

        register_external_table(get_spark("register-table", cfg.spark), cfg.paths.warehouse)
    return manifest
