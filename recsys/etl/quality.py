"""The clean step's books: the data-quality summary and the reconciliation check."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys.etl.reasons import QuarantineReason

DQ_SUMMARY_FILE = "_dq_summary.json"


class ReconciliationError(RuntimeError):
    """raw != clean + duplicates + quarantined: rows were lost or counted twice."""


def route_counts(routed: DataFrame) -> dict:
    """raw / duplicates / per-reason / per-file counts from the routed frame, in one aggregation."""
    rows = routed.groupBy("source_file", "reason", "duplicate").count().collect()
    reasons = {r.value: 0 for r in QuarantineReason}
    per_file: dict[str, dict[str, int]] = {}
    raw = duplicates = 0
    for row in rows:
        raw += row["count"]
        f = per_file.setdefault(row["source_file"], {"raw": 0, "quarantined": 0})
        f["raw"] += row["count"]
        if row["reason"] is not None:
            f["quarantined"] += row["count"]
            reasons[row["reason"]] = reasons.get(row["reason"], 0) + row["count"]
        elif row["duplicate"]:
            duplicates += row["count"]
    return {"raw": raw, "duplicates": duplicates, "reasons": reasons, "per_file": per_file}


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
