"""Publish a staged top-N table: validate, write the manifest, swap it in atomically, retain K.

Contract of a published partition ``<warehouse>/recommendations/ds=<ds>/``:
- one or more ``*.parquet`` files with ``schema.RECOMMENDATIONS_ARROW``, sorted by user, rank;
- ``_manifest.json``: counts, provenance, schema, per-file sha256, one table checksum and, when
  the caller passes the day's :class:`~recsys.evaluate.beyond.ReportInputs`, the nightly report;
- ``_SUCCESS``, written last (by :func:`recsys.io.publish_dir`).
Both metadata files start with ``_`` so Spark, Trino and Hive skip them when reading the data.
Nothing here imports Spark except :func:`register_external_table`.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from recsys import io
from recsys.config import ReportBounds
from recsys.evaluate.beyond import ReportInputs, nightly_report
from recsys.schema import RECOMMENDATIONS, RECOMMENDATIONS_ARROW
from recsys.score.staging import SCORING_INFO, pending_path
from recsys.score.validate import (
    Check,
    Reference,
    check_report,
    check_schema,
    check_values,
    validate,
)

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"


def data_files(folder: Path) -> list[Path]:
    """The table's data files in ``folder`` (hidden and ``_`` files excluded), by name."""
    return sorted(p for p in Path(folder).glob("*.parquet") if not p.name.startswith(("_", ".")))


def read_table(folder: Path | str) -> pa.Table:
    """Read a staged or published partition's data files (``ds`` not included)."""
    files = data_files(Path(folder))
    if not files:
        return RECOMMENDATIONS_ARROW.empty_table()
    return pads.dataset([str(f) for f in files], format="parquet").to_table()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_checksums(folder: Path) -> tuple[list[dict[str, Any]], str]:
    """Per-file sha256 and a table checksum (sha256 over the sorted ``name:sha256`` lines)."""
    files = [{"name": p.name, "bytes": p.stat().st_size, "sha256": _sha256(p)} for p in data_files(folder)]
    lines = "".join(f"{f['name']}:{f['sha256']}\n" for f in files)
    return files, hashlib.sha256(lines.encode()).hexdigest()


def build_manifest(folder: Path, ds: str, table: pa.Table, checks: list[Check], force: bool,
                   report: dict | None = None) -> dict:
    """The manifest of the table staged in ``folder``."""
    files, checksum = file_checksums(folder)
    first = {c: table.column(c)[0].as_py() for c in
             ("model_name", "model_version", "mlflow_run_id", "generated_at")}
    per_source = table.group_by("source").aggregate([("user_id", "count_distinct")])
    by_source = dict(zip(per_source.column("source").to_pylist(),
                         per_source.column("user_id_count_distinct").to_pylist()))
    info_file = folder / SCORING_INFO
    return {
        "table": RECOMMENDATIONS, "ds": ds,
        "row_count": table.num_rows,
        "user_count": len(pc.unique(table.column("user_id"))),
        "users_by_source": by_source,
        "model_name": first["model_name"], "model_version": first["model_version"],
        "mlflow_run_id": first["mlflow_run_id"], "generated_at": first["generated_at"].isoformat(),
        "published_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "schema": [{"name": f.name, "type": str(f.type), "nullable": f.nullable}
                   for f in RECOMMENDATIONS_ARROW] + [{"name": "ds", "type": "string", "partition": True}],
        "files": files, "checksum": checksum,
        "checks": [{"name": c.name, "ok": c.ok, "skipped": c.skipped} for c in checks],
        "forced": force,
        "scoring": json.loads(info_file.read_text()) if info_file.exists() else None,
        "report": report,
    }


def previous_partition(warehouse: Path | str, ds: str) -> str | None:
    """The newest complete published day before ``ds`` (yesterday, on a nightly schedule)."""
    days = [d for d in io.list_partitions(warehouse, RECOMMENDATIONS) if d < ds]
    return days[-1] if days else None


def day_report(warehouse: Path | str, ds: str, table: pa.Table, inputs: ReportInputs) -> tuple[dict, dict | None]:
    """(the nightly report of ``table``, the previous published day's report from its manifest,
    None when there is no previous day or it has no report)."""
    prev_ds = previous_partition(warehouse, ds)
    prev_table = None if prev_ds is None else read_table(io.partition_path(warehouse, RECOMMENDATIONS, prev_ds))
    report = nightly_report(table, inputs, prev_table, prev_ds)
    prev_manifest = None if prev_ds is None else published_manifest(warehouse, prev_ds)
    return report, (prev_manifest or {}).get("report")


def report_history(warehouse: Path | str, before: str | None = None) -> list[tuple[str, dict]]:
    """(ds, report) of every published day whose manifest carries a report, oldest first."""
    out = []
    for d in io.list_partitions(warehouse, RECOMMENDATIONS):
        if before is not None and d >= before:
            continue
        m = published_manifest(warehouse, d)
        if m and m.get("report"):
            out.append((d, m["report"]))
    return out


def validate_staged(warehouse: Path | str, ds: str, top_n: int, reference: Reference | None = None,
                    force: bool = False, staged: Path | None = None, report_inputs: ReportInputs | None = None,
                    bounds: ReportBounds | None = None) -> tuple[Path, pa.Table, list[Check], dict | None]:
    """Validate the staged table of ``ds`` without publishing: (folder, table, checks, report).

    With ``report_inputs`` the nightly report is computed (else it is None) and checked against
    ``bounds`` and the previous published day's report. Raises like :func:`publish`; touches nothing.
    """
    staged = Path(staged) if staged else pending_path(warehouse, ds)
    if not staged.is_dir():
        raise FileNotFoundError(f"nothing staged for ds={ds} at {staged}: run `recsys score --ds {ds}` first")
    table = read_table(staged)
    report, extra = None, []
    # The report reads the lists, so only a table whose columns passed the structural checks.
    sound = check_schema(table).ok and all(c.ok for c in check_values(table))
    if report_inputs is not None and sound:
        report, previous = day_report(warehouse, ds, table, report_inputs)
        bounds = bounds or ReportBounds()
        extra = check_report(report, previous, bounds.max_coverage_change, bounds.min_overlap)
    return staged, table, validate(table, top_n=top_n, reference=reference, force=force, extra=extra), report


def publish(warehouse: Path | str, ds: str, top_n: int, keep: int,
            reference: Reference | None = None, force: bool = False,
            staged: Path | None = None, report_inputs: ReportInputs | None = None,
            bounds: ReportBounds | None = None,
            before_swap: Callable[[dict], None] | None = None) -> dict:
    """Validate the staged table of ``ds`` and publish it; return its manifest.

    ``report_inputs`` (the day's training set, see :class:`~recsys.evaluate.beyond.ReportInputs`):
    compute the nightly report, refuse the table when it leaves ``bounds``, and write it into the
    manifest (``report``). Raises ``FileNotFoundError`` when nothing is staged and
    :class:`recsys.score.validate.TableRejected` when a check fails; in both cases the live
    partition is left as it was, and a rejected table stays in staging for inspection.
    ``before_swap(manifest)`` runs after validation, before the swap (the step logs the report to
    MLflow there: if it fails, nothing was published and the publish can simply be retried).
    """
    io.clear_publish_leftovers(warehouse, RECOMMENDATIONS, ds)  # of a publish killed earlier
    staged, table, checks, report = validate_staged(warehouse, ds, top_n, reference, force, staged,
                                                    report_inputs, bounds)
    for c in checks:
        if c.skipped:
            log.warning("--force: publishing despite %s: %s", c.name, c.message)
    manifest = build_manifest(staged, ds, table, checks, force, report)
    (staged / MANIFEST).write_text(json.dumps(manifest, indent=2))
    if before_swap is not None:
        before_swap(manifest)
    final = io.partition_path(warehouse, RECOMMENDATIONS, ds)
    io.publish_dir(staged, final)
    dropped = io.drop_old_partitions(warehouse, RECOMMENDATIONS, keep, protect=ds)
    log.info("published %d rows for %d users to %s; retention dropped %s",
             manifest["row_count"], manifest["user_count"], final, dropped or "nothing")
    return manifest


def reference_from_training_set(ts, exclude_seen: bool = True, exclude_unavailable: bool = True) -> Reference:
    """The checks' reference from the day's ``TrainingSet`` (ids, not indices)."""
    inter = ts.interactions
    user_ids, item_ids = np.asarray(ts.user_ids).astype(str), np.asarray(ts.item_ids).astype(str)
    unavailable = None
    if exclude_unavailable and getattr(ts, "item_available", None) is not None:
        unavailable = item_ids[~np.asarray(ts.item_available, bool)]
    return Reference(
        active_users=user_ids,
        seen_users=user_ids[inter.user_idx] if exclude_seen else None,
        seen_items=item_ids[inter.item_idx] if exclude_seen else None,
        unavailable_items=unavailable,
    )


def published_manifest(warehouse: Path | str, ds: str) -> dict | None:
    """The manifest of the live ``recommendations/ds=<ds>`` partition, or None when that day has
    no complete published partition (never published, or dropped by retention)."""
    folder = io.partition_path(warehouse, RECOMMENDATIONS, ds)
    if not io.is_complete(folder) or not (folder / MANIFEST).exists():
        return None
    return json.loads((folder / MANIFEST).read_text())


def verify_partition(folder: Path | str) -> bool:
    """True when the partition is complete and its files match the manifest's checksums."""
    folder = Path(folder)
    if not io.is_complete(folder) or not (folder / MANIFEST).exists():
        return False
    manifest = json.loads((folder / MANIFEST).read_text())
    return file_checksums(folder)[1] == manifest["checksum"]


_SQL_TYPES = {pa.string(): "STRING", pa.int32(): "INT", pa.float32(): "FLOAT",
              pa.list_(pa.field("element", pa.string(), nullable=False)): "ARRAY<STRING>"}


def table_ddl(name: str, location: str) -> str:
    """``CREATE TABLE`` for the published table as a Parquet external table partitioned by ds."""
    cols = ",\n  ".join(
        f"{f.name} {_SQL_TYPES.get(f.type, 'TIMESTAMP' if pa.types.is_timestamp(f.type) else None)}"
        for f in RECOMMENDATIONS_ARROW)
    return (f"CREATE TABLE IF NOT EXISTS {name} (\n  {cols},\n  ds STRING\n)\n"
            f"USING parquet\nPARTITIONED BY (ds)\nLOCATION '{location}'")


def register_external_table(spark, warehouse: Path | str, name: str = RECOMMENDATIONS) -> list[str]:
    """Create (if needed) the external table ``name`` over the published partitions and sync its
    partition list with the folders (new days added, retention-dropped days removed).

    Returns the ``ds`` values the catalog lists afterwards.
    """
    location = str(io.table_path(warehouse, RECOMMENDATIONS).resolve())
    spark.sql(table_ddl(name, location))
    spark.sql(f"MSCK REPAIR TABLE {name} SYNC PARTITIONS")
    spark.sql(f"REFRESH TABLE {name}")
    return sorted(r[0].split("=", 1)[1] for r in spark.sql(f"SHOW PARTITIONS {name}").collect())
