"""The clean step's books: the data-quality summary and the reconciliation check."""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recsys.etl.reasons import QuarantineReason

DQ_SUMMARY_FILE = "_dq_summary.json"


class ReconciliationError(RuntimeError):
    """raw != clean + duplicates + quarantined: rows were lost or counted twice."""


def routing_aggregates(files: list[str]) -> list[Column]:
    """Aggregate columns that count a routed frame's books in one pass.

    Usable with ``DataFrame.agg`` or ``DataFrame.observe`` (so the counts come with a write, at
    no extra pass). ``files`` are the source file names (the ``source_file`` values) to count
    per file; a row from a file not listed is caught by :func:`read_routing_counts`.
    """
    reason, n = F.col("reason"), F.lit(1)
    aggs = [F.count(n).alias("raw"), F.count_if(reason.isNull() & F.col("duplicate")).alias("duplicates")]
    aggs += [F.count_if(reason == r.value).alias(f"reason:{r.value}") for r in QuarantineReason]
    for i, name in enumerate(files):
        in_file = F.col("source_file") == name
        aggs += [F.count_if(in_file).alias(f"file_raw:{i}"),
                 F.count_if(in_file & reason.isNotNull()).alias(f"file_quarantined:{i}")]
    return aggs


def read_routing_counts(row: dict, files: list[str]) -> dict:
    """The dict of :func:`route_counts` from the values of :func:`routing_aggregates`."""
    reasons = {r.value: int(row[f"reason:{r.value}"]) for r in QuarantineReason}
    per_file = {name: {"raw": int(row[f"file_raw:{i}"]), "quarantined": int(row[f"file_quarantined:{i}"])}
                for i, name in enumerate(files)}
    counted = sum(f["raw"] for f in per_file.values())
    if counted != row["raw"]:  # a source_file value that is not a known file name
        raise ReconciliationError(f"per-file counts sum to {counted}, but {row['raw']} rows were routed")
    return {"raw": int(row["raw"]), "duplicates": int(row["duplicates"]), "reasons": reasons,
            "per_file": per_file}


def route_counts(routed: DataFrame, files: list[str]) -> dict:
    """raw / duplicates / per-reason / per-file counts of a routed frame, in one aggregation."""
    return read_routing_counts(routed.agg(*routing_aggregates(files)).first().asDict(), files)


def clean_stats(clean: DataFrame) -> dict:
    """Row count, distinct users/items and the ts range of a clean interactions table."""
    row = clean.agg(
        F.count(F.lit(1)).alias("clean"),
        F.countDistinct("user_id").alias("distinct_users"),
        F.countDistinct("item_id").alias("distinct_items"),
        F.min("ts").alias("ts_min"),
        F.max("ts").alias("ts_max"),
    ).first()
    out = row.asDict()
    for k in ("ts_min", "ts_max"):
        out[k] = None if out[k] is None else out[k].isoformat()
    return out


def summarize(ds: str, counts: dict, clean: dict, quarantined: int, files: list[dict],
              side: dict) -> dict:
    """The data-quality summary: top-level numbers (logged as MLflow metrics) plus details."""
    summary = {
        "ds": ds,
        "raw": counts["raw"],
        "clean": clean["clean"],
        "duplicates": counts["duplicates"],
        "quarantined": quarantined,
        "distinct_users": clean["distinct_users"],
        "distinct_items": clean["distinct_items"],
        "ts_min": clean["ts_min"],
        "ts_max": clean["ts_max"],
        "reasons": counts["reasons"],
        "files": files,
        "side_inputs": side,
    }
    # Flat copies, so every count is a number at the top level (MLflow logs those as metrics).
    summary.update({f"quarantine_{k}": v for k, v in counts["reasons"].items()})
    return summary


def reconcile(summary: dict) -> None:
    """Fail loudly unless every raw row is accounted for exactly once."""
    raw, clean, dup, quar = (summary[k] for k in ("raw", "clean", "duplicates", "quarantined"))
    by_reason = sum(summary["reasons"].values())
    if raw != clean + dup + quar or by_reason != quar:
        raise ReconciliationError(
            f"ds={summary['ds']}: raw={raw} but clean={clean} + duplicates={dup} + "
            f"quarantined={quar} = {clean + dup + quar} (quarantine by reason sums to {by_reason})")
