"""The publish step: validate the staged top-N table of a day against its training set, compute the
nightly report (recsys.evaluate.beyond) and check it against the previous day's, log it to MLflow,
publish the table atomically, apply retention. Loads neither torch nor Spark at import (MLflow and
``recsys.tracking`` only when the report is logged; Spark only for ``register_table``)."""
from __future__ import annotations

import pyarrow.dataset as pads

from recsys.config import Config
from recsys.data.training_set import TrainingSet, load_training_set
from recsys.evaluate.beyond import ReportInputs
from recsys.score.publish import (
    Check,
    Reference,
    publish,
    reference_from_training_set,
    register_external_table,
    report_history,
    validate_staged,
)
from recsys.score.validate import TableRejected

__all__ = ["TableRejected", "publish_ds", "validate_ds"]


def _reference(cfg: Config, ts: TrainingSet) -> Reference:
    return reference_from_training_set(ts, cfg.score.exclude_seen, cfg.score.exclude_unavailable)


def report_inputs(ts: TrainingSet) -> ReportInputs:
    """The report's view of the training set: catalog, popularity, item features by name."""
    names = None
    folder = None if getattr(ts, "path", None) is None else ts.path / "item_features"
    if ts.interactions.item_features is not None and folder is not None and folder.is_dir():
        cols = pads.dataset(str(folder), format="parquet").schema.names
        names = sorted(c for c in cols if c not in ("item_idx", "available"))  # the matrix's order
    return ReportInputs.from_training_set(ts, names)


def validate_ds(cfg: Config, ds: str, force: bool = False) -> list[Check]:
    """Run publish's checks (the report's included) on the staged table of ``ds``; publish
    nothing. Returns the checks."""
    ts = load_training_set(cfg.paths.warehouse, ds)
    return validate_staged(cfg.paths.warehouse, ds, cfg.score.top_n, _reference(cfg, ts), force,
                           report_inputs=report_inputs(ts), bounds=cfg.publish.report_bounds)[2]


def publish_ds(cfg: Config, ds: str, force: bool = False, register_table: bool = False,
               log_report: bool = True) -> dict:
    """Validate the staged table of ``ds`` against its training set and publish it.

    The nightly report goes into the manifest (``report``) and, with ``log_report``, to its MLflow
    run (:func:`recsys.tracking.log_nightly_report`, before the swap) with a plot over the days
    whose manifests carry a report.
    """
    ts = load_training_set(cfg.paths.warehouse, ds)
    wh = cfg.paths.warehouse

    def log(manifest: dict) -> None:
        if log_report and manifest.get("report") is not None:
            from recsys.tracking import (
                log_nightly_report,  # MLflow (and torch) only here
            )

            log_nightly_report(cfg, ds, manifest["report"], report_history(wh), manifest)

    manifest = publish(wh, ds, top_n=cfg.score.top_n, keep=cfg.publish.retention_partitions,
                       reference=_reference(cfg, ts), force=force, report_inputs=report_inputs(ts),
                       bounds=cfg.publish.report_bounds, before_swap=log)
    if register_table:
        from recsys.spark import (
            get_spark,  # the only Spark use of this step, on request
        )

        register_external_table(get_spark("register-table", cfg.spark), cfg.paths.warehouse)
    return manifest
