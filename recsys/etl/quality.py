"""The clean step's books: the data-quality summary and the reconciliation check."""
from __future__ import annotations

import datetime as dt

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


# grouping_id() of the tally's grouping sets over (source_file, reason, duplicate, user_id, item_id):
# a bit is set for each column *not* grouped on, the first column being the highest bit.
_BY_FILE, _BY_USER, _BY_ITEM = 0b00011, 0b11101, 0b11110


def tally(marked: DataFrame, bot_threshold: int) -> dict:
    """The books, the bot users and the distinct kept users/items in one aggregation.

    ``marked`` is the routed frame before bots are marked (``reason``, ``duplicate``). One pass
    groups it three ways (grouping sets): by (file, reason, duplicate) for the books, by user for
    the kept events per user (bots: more than ``bot_threshold``) and by item. Returns
    ``{"raw", "duplicates", "reasons", "by_file": {file: {"raw", "quarantined"}}, "bots":
    {user: kept events}, "kept_users", "kept_items"}``; ``reasons`` and ``by_file`` do not yet
    count the bots' rows (``bot_user``), which only the bot list decides.
    """
    kept = F.col("reason").isNull() & ~F.col("duplicate")
    cols = ("source_file", "reason", "duplicate", "user_id", "item_id")
    grouped = marked.groupingSets([cols[:3], ["user_id"], ["item_id"]], *cols).agg(
        F.count(F.lit(1)).alias("n"), F.count_if(kept).alias("kept"), F.grouping_id().alias("g"))
    g, n_kept = F.col("g"), F.col("kept")
    row = grouped.agg(
        F.count_if((g == _BY_USER) & (n_kept > 0)).alias("kept_users"),
        F.count_if((g == _BY_ITEM) & (n_kept > 0)).alias("kept_items"),
        F.collect_list(F.when(g == _BY_FILE, F.struct(*cols[:3], "n"))).alias("books"),
        F.collect_list(F.when((g == _BY_USER) & (n_kept > bot_threshold),
                              F.struct("user_id", "kept"))).alias("bots"),
    ).first()
    reasons = {r.value: 0 for r in QuarantineReason}
    by_file: dict[str, dict] = {}
    raw = duplicates = 0
    for b in row["books"]:
        f = by_file.setdefault(b["source_file"], {"raw": 0, "quarantined": 0})
        f["raw"] += b["n"]
        raw += b["n"]
        if b["reason"] is not None:
            reasons[b["reason"]] += b["n"]
            f["quarantined"] += b["n"]
        elif b["duplicate"]:
            duplicates += b["n"]
    return {"raw": raw, "duplicates": duplicates, "reasons": reasons, "by_file": by_file,
            "bots": {b["user_id"]: b["kept"] for b in row["bots"]},
            "kept_users": row["kept_users"], "kept_items": row["kept_items"]}


def with_bots(counts: dict, bot_rows_by_file: dict[str, int], files: list[str]) -> dict:
    """:func:`tally` counts with the bots' rows filed under ``bot_user``, as :func:`route_counts`.

    ``bot_rows_by_file`` counts the quarantined bot rows per source file (empty without bots).
    """
    reasons = {**counts["reasons"], "bot_user": sum(counts["bots"].values())}
    unknown = sorted(set(counts["by_file"]) - set(files), key=str)
    if unknown:
        raise ReconciliationError(f"rows routed from files that were not read: {unknown}")
    per_file = {name: dict(counts["by_file"].get(name, {"raw": 0, "quarantined": 0})) for name in files}
    for name, n in bot_rows_by_file.items():
        per_file[name]["quarantined"] += n
    return {"raw": counts["raw"], "duplicates": counts["duplicates"], "reasons": reasons,
            "per_file": per_file}


def iso_micros(us: int | None) -> str | None:
    """ISO-8601 text (UTC, no offset) of epoch microseconds."""
    return None if us is None else (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=us)).isoformat()


def clean_stats(clean: DataFrame) -> dict:
    """Row count, distinct users/items and the ts range of a clean interactions table."""
    row = clean.agg(
        F.count(F.lit(1)).alias("clean"),
        F.countDistinct("user_id").alias("distinct_users"),
        F.countDistinct("item_id").alias("distinct_items"),
        F.min(F.unix_micros("ts")).alias("ts_min"),
        F.max(F.unix_micros("ts")).alias("ts_max"),
    ).first()
    out = row.asDict()
    for k in ("ts_min", "ts_max"):
        out[k] = iso_micros(out[k])
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
    """Fail loudly unless every raw row is accounted for exactly once.

    ``erased`` (absent = 0) counts clean rows that ``recsys forget`` removed after the day was
    cleaned: raw = clean + duplicates + quarantined + erased.
    """
    raw, clean, dup, quar = (summary[k] for k in ("raw", "clean", "duplicates", "quarantined"))
    gone = summary.get("erased", 0)
    by_reason = sum(summary["reasons"].values())
    if raw != clean + dup + quar + gone or by_reason != quar:
        raise ReconciliationError(
            f"ds={summary['ds']}: raw={raw} but clean={clean} + duplicates={dup} + "
            f"quarantined={quar} + erased={gone} = {clean + dup + quar + gone} "
            f"(quarantine by reason sums to {by_reason})")
