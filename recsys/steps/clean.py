"""The clean step for one ``ds``: landing -> clean interactions, quarantine, side inputs, DQ summary.

Everything is written to staging folders first; only when the books balance
(raw = clean + duplicates + quarantined) are the partitions published, each with one atomic
swap, interactions last (its ``_dq_summary.json`` marks the step as done). A re-run replaces
exactly this ``ds`` of each table and nothing else.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow.parquet as pq
from pyspark import StorageLevel
from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys import io
from recsys.config import Config
from recsys.etl import clean, erasures, landing, quality, side_inputs
from recsys.etl.reasons import QuarantineReason as R
from recsys.schema import DS, INTERACTIONS, ITEMS, QUARANTINE, USERS
from recsys.spark import get_spark

log = logging.getLogger(__name__)

_EMPTY_RAW = T.StructType(
    [T.StructField(c, T.StringType()) for c in landing.OUTPUT_COLUMNS if c != "malformed"]
    + [T.StructField("malformed", T.BooleanType())]
)


def landing_folder(landing_root: Path, table: str, ds: str) -> Path:
    io.parse_ds(ds)
    return Path(landing_root) / table / f"{DS}={ds}"


def _route_once(raw: DataFrame, ds: str, cfg: Config,
                erased: erasures.Erasures | None = None) -> tuple[DataFrame, dict, DataFrame]:
    """Route with the files read, parsed and shuffled once; returns (routed rows, tally, the
    persisted frame, which the caller unpersists once the writes are done).

    The de-duplicated rows are persisted to disk as the first action computes them (serialized
    rows, cheaper than a columnar cache), so the two writes read them back instead of parsing
    the landing files again. That first action is :func:`quality.tally`: the books,
    the bot users and the distinct kept users/items in one aggregation. The bot users are a
    handful: a literal list keeps the writes free of a join.
    Persisted, not ``localCheckpoint``-ed: a local checkpoint cuts the lineage, so when a worker
    died during the writes its blocks were gone for good and the step failed
    (CHECKPOINT_RDD_BLOCK_ID_NOT_FOUND); persisted blocks that are lost are recomputed from the
    landing files on the surviving executors. It must be unpersisted after the writes: Spark
    matches cached data by plan, so a rerun of the day over changed landing files would
    otherwise read the first run's rows.
    """
    marked = clean.mark_duplicates(clean.with_reasons(raw, ds, cfg.clean, erased))
    marked = marked.persist(StorageLevel.DISK_ONLY)
    tallied = quality.tally(marked, cfg.clean.bot_max_events_per_day)
    return clean.mark_bots(marked, cfg.clean, list(tallied["bots"])), tallied, marked


# Bytes of parsed rows a landing byte becomes, roughly: compressed files expand.
_EXPANSION = {"gz": 5, "parquet": 4}
_BYTES_PER_SHUFFLE_PARTITION = 64 * 2**20


def shuffle_partitions(files: list[landing.LandingFile], configured: int) -> int:
    """Shuffle partitions for the de-duplication sort: at least ``configured``, and enough that
    each holds ~64 MiB of parsed rows, so that two sorts at a time fit in memory.

    Too few partitions spill the sort to disk (4 partitions at 10M events spilled 630 MB);
    too many are merged back by adaptive execution (AQE coalescing).
    """
    size = 0
    for f in files:
        kind = "gz" if f.path.suffix.lower() == ".gz" else f.format
        size += f.path.stat().st_size * _EXPANSION.get(kind, 1)
    return max(configured, -(-size // _BYTES_PER_SHUFFLE_PARTITION))


def _file_counts(counts: dict, files: list[landing.LandingFile]) -> list[dict]:
    per_file = counts.pop("per_file")
    return [{"file": f.path.name, "format": f.format, **per_file[f.path.name]} for f in files]


def _parquet_rows(path: Path) -> int:
    """Rows in the Parquet files of ``path``, from their footers (no Spark job)."""
    return sum(pq.read_metadata(f).num_rows for f in Path(path).glob("*.parquet"))


def _stage_side(spark: SparkSession, cfg: Config, landing_root: Path, warehouse: Path,
                ds: str, erased: erasures.Erasures | None = None) -> tuple[dict[str, Path], dict]:
    """Clean and stage the item catalog and user profiles that exist for ``ds``; profiles of
    erased users (``recsys forget``) are dropped and counted (``erased``)."""
    staged, stats = {}, {}
    for table, cleaner in ((ITEMS, side_inputs.clean_items), (USERS, side_inputs.clean_users)):
        raw = side_inputs.read_side_input(spark, landing_folder(landing_root, table, ds))
        if raw is None:
            continue
        obs = Observation(f"{table}_rejected")
        good, _ = cleaner(raw, cfg.clean.id_pattern, obs)
        gone = None
        if table == USERS and erased:
            gone = Observation("users_erased")
            good = (good.withColumn("_erased", F.coalesce(clean.erased(F.col("user_id"), erased),
                                                          F.lit(False)))
                    .observe(gone, F.count_if("_erased").alias("erased"))
                    .where(~F.col("_erased")).drop("_erased"))
        path = io.staging_path(warehouse, table, ds)
        good.write.parquet(str(path))
        stats[table] = {"rows": _parquet_rows(path), "rejected": int(obs.get["rejected"])}
        if gone is not None:
            stats[table]["erased"] = int(gone.get["erased"])
        staged[table] = path
    return staged, stats


def _write_interactions(routed: DataFrame, staged: dict[str, Path]) -> dict:
    """Write quarantine then clean rows; the clean ts range is observed with the clean write."""
    # No dictionary for columns whose values never repeat: building one that overflows and is
    # then discarded is the costliest part of the Parquet writer.
    (clean.quarantine_rows(routed).write.option("parquet.enable.dictionary#raw", "false")
     .parquet(str(staged[QUARANTINE])))
    obs = Observation("clean_ts")
    # Two aggregates only: observe() costs per aggregate and row (per-file counts here cost
    # more than the write itself at 20 files), so the books come from quality.tally instead.
    observed = clean.clean_rows(routed).observe(
        obs, F.min(F.unix_micros("ts")).alias("ts_min"), F.max(F.unix_micros("ts")).alias("ts_max"))
    (observed.write.option("parquet.enable.dictionary#event_id", "false")
     .parquet(str(staged[INTERACTIONS])))
    return {k: quality.iso_micros(v) for k, v in obs.get.items()}


def _clean_stats(spark: SparkSession, staged: dict[str, Path], tallied: dict, ts_range: dict) -> dict:
    """Rows (Parquet footers), distinct users/items and ts range of the staged clean table."""
    bots = tallied["bots"]
    # Without bots the kept items are the clean items; a bot's items may have no other event.
    items = tallied["kept_items"] if not bots else (
        spark.read.parquet(str(staged[INTERACTIONS])).select("item_id").distinct().count())
    return {"clean": _parquet_rows(staged[INTERACTIONS]),
            "distinct_users": tallied["kept_users"] - len(bots), "distinct_items": items,
            **ts_range}


def _bot_rows_by_file(spark: SparkSession, quarantine: Path) -> dict[str, int]:
    """Quarantined bot rows per source file, from the staged quarantine (2 % of the rows)."""
    rows = (spark.read.parquet(str(quarantine)).where(F.col("reason") == R.BOT_USER.value)
            .groupBy("source_file").count().collect())
    return {r["source_file"]: r["count"] for r in rows}


def run_clean(spark: SparkSession, cfg: Config, ds: str, landing_root: Path,
              warehouse: Path) -> dict:
    """Clean the landing partition ``ds`` into the warehouse; return the DQ summary."""
    # Contract column names are exact (a Parquet file may carry both user_id and USER_ID): read
    # case-sensitively, then put the session back as it was.
    case_sensitive = spark.conf.get("spark.sql.caseSensitive", "false")
    spark.conf.set("spark.sql.caseSensitive", "true")
    try:
        return _read_and_clean(spark, cfg, ds, landing_root, warehouse)
    finally:
        spark.conf.set("spark.sql.caseSensitive", case_sensitive)


def _read_and_clean(spark: SparkSession, cfg: Config, ds: str, landing_root: Path,
                    warehouse: Path) -> dict:
    folder = landing_folder(landing_root, INTERACTIONS, ds)
    # The tombstone of `recsys forget` first: without its key the step must not run at all.
    erased = erasures.read_erasures(warehouse, cfg.paths.home)
    raw, files = landing.read_landing(spark, folder)  # only a missing folder raises
    for table in (ITEMS, USERS):  # side inputs: fail on unknown formats before writing too
        side = landing_folder(landing_root, table, ds)
        if side.is_dir():
            side_inputs.discover_side(side)
    # Naive ISO timestamps mean UTC, and epoch math must not depend on the machine's zone.
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    configured = int(spark.conf.get("spark.sql.shuffle.partitions"))
    spark.conf.set("spark.sql.shuffle.partitions", shuffle_partitions(files, configured))
    try:
        return _clean(spark, cfg, ds, landing_root, warehouse, raw, files, erased)
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", configured)


def _clean(spark: SparkSession, cfg: Config, ds: str, landing_root: Path, warehouse: Path,
           raw: DataFrame | None, files: list[landing.LandingFile],
           erased: erasures.Erasures | None = None) -> dict:
    for table in (INTERACTIONS, QUARANTINE, ITEMS, USERS):
        io.clear_staging(warehouse, table, ds)
    if raw is None:
        raw = spark.createDataFrame([], _EMPTY_RAW)
    names = [f.path.name for f in files]
    staged: dict[str, Path] = {}
    persisted = None
    try:
        routed, tallied, persisted = _route_once(raw, ds, cfg, erased)
        staged[INTERACTIONS] = io.staging_path(warehouse, INTERACTIONS, ds)
        staged[QUARANTINE] = io.staging_path(warehouse, QUARANTINE, ds)
        ts_range = _write_interactions(routed, staged)
        bot_files = _bot_rows_by_file(spark, staged[QUARANTINE]) if tallied["bots"] else {}
        counts = quality.with_bots(tallied, bot_files, names)
        file_counts = _file_counts(counts, files)
        side_staged, side_stats = _stage_side(spark, cfg, landing_root, warehouse, ds, erased)
        staged.update(side_staged)
        # The books check the files: clean and quarantined rows are counted in what was written.
        stats = _clean_stats(spark, staged, tallied, ts_range)
        quarantined = _parquet_rows(staged[QUARANTINE])
        summary = quality.summarize(ds, counts, stats, quarantined, file_counts, side_stats)
        quality.reconcile(summary)
    except Exception:
        for table in staged:
            io.clear_staging(warehouse, table, ds)
        raise
    finally:
        if persisted is not None:
            persisted.unpersist()
    (staged[INTERACTIONS] / quality.DQ_SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    for table in (QUARANTINE, ITEMS, USERS, INTERACTIONS):
        if table in staged:
            io.publish_dir(staged[table], io.partition_path(warehouse, table, ds))
    log.info("clean ds=%s: raw=%d clean=%d duplicates=%d quarantined=%d", ds, summary["raw"],
             summary["clean"], summary["duplicates"], summary["quarantined"])
    return summary


def clean_ds(cfg: Config, ds: str, landing_root: Path | None = None, warehouse: Path | None = None,
             master: str | None = None) -> dict:
    """The clean step as the job runs it: a Spark session from the config (or ``master``), then
    :func:`run_clean` over the configured (or given) landing and warehouse roots."""
    spark = get_spark("clean", cfg.spark, master=master)
    return run_clean(spark, cfg, ds, landing_root or cfg.paths.landing,
                     warehouse or cfg.paths.warehouse)
