"""The score step: every user of the day's training set, scored with the family's champion; the
top-N table is staged for the publish step (:mod:`recsys.steps.publish`)."""
from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import numpy as np

from recsys.config import Config
from recsys.data.training_set import load_training_set
from recsys.device import choose_device
from recsys.score._sink import Provenance
from recsys.score.engine import stage, write_topn
from recsys.tracking import LoadedModel, load_model

log = logging.getLogger(__name__)


def _candidates(cfg: Config, loaded: LoadedModel, n_items: int):
    """A factorized model in the same id space as ``loaded``, when re-ranking is needed."""
    if loaded.model.factorized or n_items <= cfg.score.full_scoring_max_items:
        return None
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
    table (see :func:`recsys.score.staging.pending_path`) and return its folder."""
    family = family or cfg.score.model
    ts = load_training_set(cfg.paths.warehouse, ds)
    loaded = load_model(cfg, family)
    # generated_at is provenance only: it never decides what is read.
    prov = Provenance(loaded.name, str(loaded.version), loaded.run_id,
                      generated_at or dt.datetime.now(dt.timezone.utc))
    log.info("scoring %d users x %d items with %s v%s (engine %s)", len(ts.user_ids),
             len(loaded.bundle.item_ids), loaded.name, loaded.version, cfg.score.engine)
    if cfg.score.engine == "spark":
        # Spark is loaded only for this engine. Executors read the user vectors (written by the
        # train step; once from this bundle for a version trained before) and the training set
        # from the warehouse: only item-sized data and cold-start users pass through the driver.
        from recsys.score.spark_score import score_warehouse
        from recsys.score.vectors import ensure_vectors
        from recsys.spark import get_spark

        wh = cfg.paths.warehouse
        vectors = ensure_vectors(wh, loaded.name, loaded.version, loaded.run_id, loaded.bundle)
        spark = get_spark("score", cfg.spark)
        return stage(wh, ds, lambda out: score_warehouse(spark, wh, ds, vectors, prov, out, cfg.score,
                                                         content_model=loaded.model))
    device = choose_device(cfg.train.device)
    cand = _candidates(cfg, loaded, len(loaded.bundle.item_ids))
    return stage(cfg.paths.warehouse, ds, lambda out: write_topn(
        loaded.bundle, ts, prov, out, cfg.score, device, candidates=cand, on_block=on_block))
