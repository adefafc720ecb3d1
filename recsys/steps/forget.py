"""The forget step: erase users from the warehouse (the right to be forgotten).

``recsys forget --user ID [--user ...]`` (``jobs/forget.py``, DAG ``recsys_forget``) runs
:func:`forget_users`, in this order, so that a run killed at any point can simply be run again:

1. the ids are made canonical as the clean step makes them (``" 42.0"`` is user ``42``);
2. leftovers of killed writers under ``_staging`` are removed (a partition a killed fallback
   publish had moved aside is put back first), so no copy of the user waits there;
3. the tombstone ``<warehouse>/erasures/`` gets a keyed hash of each new id
   (:mod:`recsys.etl.erasures`): from now on the clean step files the users' raw rows under
   ``erased_user``, without their payload;
4. every registered model version trained on a training set that holds one of the users is
   tagged ``erased_users_pending=true`` (:func:`recsys.tracking.mark_versions_trained_on_erased`);
   the next nightly's gate replaces such a champion with the new, clean version; the model
   bundle of every version that holds a user (its id, its vectors, its seen items) is rewritten
   without them in the artifact store, after step 5 (:func:`recsys.tracking.redact_versions`);
5. each partition that holds a user is rewritten beside the live one and swapped in atomically
   (:func:`recsys.io.publish_dir`): ``interactions`` (rows removed; ``_dq_summary.json`` counts
   them as ``erased``, so raw = clean + duplicates + quarantined + erased still balances),
   ``quarantine`` (rows that mention the user keep ``reason`` and ``source_file``; ``raw`` and
   ``raw_b64`` become null), ``users`` (profiles), ``training_set`` (the user's rows, map entry
   and features; user indices renumbered densely), ``recommendations`` (rows removed, manifest
   counts and checksums rewritten), ``model_vectors`` (user vectors), and a scored table waiting
   in ``_staging`` for publish;
6. the consumer's CSV export is rewritten from the published table;
7. the warehouse, the exports and a local MLflow artifact store are searched for any trace left
   (:func:`_erase.find_traces`);
   one found is an error (:class:`ForgetIncomplete`).

A second run with the same users changes nothing. Run it when no nightly run is writing (the
DAG cannot see the other DAG's runs; a nightly publishing at the same time could put back a
partition scored before the erasure). pyarrow only: no Spark session is started.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import shutil
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from recsys import io
from recsys.config import Config
from recsys.etl import erasures, quality
from recsys.schema import (
    INTERACTIONS,
    MODEL_VECTORS,
    QUARANTINE,
    RECOMMENDATIONS,
    STAGING,
    TRAINING_SET,
    USERS,
)
from recsys.steps import _erase

log = logging.getLogger(__name__)

EXPORTS = "exports"  # under paths.home, written by the consumer DAG (recsys.steps.export)
EXPORT_CSV = "recommendations_latest.csv"


class ForgetIncomplete(RuntimeError):
    """A trace of an erased user is still in the warehouse after the rewrite."""


@dataclasses.dataclass
class ForgetReport:
    users: int
    tombstoned: int  # ids added to the tombstone now (0 when all were there already)
    versions_tagged: list[str]  # "<registered name> v<version>"
    versions_redacted: list[str]  # versions whose MLflow model bundle held a user: rewritten
    partitions: dict[str, list[str]]  # table -> partitions rewritten (ds, or model/version)
    rows_removed: dict[str, int]
    quarantine_blanked: int
    exports: str | None
    traces: list[str]

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def canonical_ids(user_ids: list[str]) -> list[str]:
    """The ids as the clean step stores them (trimmed, integral numbers canonical: the SQL of
    :func:`recsys.etl.clean.canonical_id_sql`, run in DuckDB); sorted, without duplicates."""
    import duckdb

    from recsys.etl.clean import canonical_id_sql

    if not user_ids:
        raise ValueError("no user to forget: pass at least one --user")
    with duckdb.connect() as con:
        rows = con.execute(f"SELECT u, {canonical_id_sql('trim(u)', 'regexp_matches')} "
                           "FROM (SELECT unnest(?::VARCHAR[]) AS u)", [list(user_ids)]).fetchall()
    out = set()
    for given, canon in rows:
        if canon is None or canon == "":
            raise ValueError(f"not a user id: {given!r}")
        out.add(canon)
    return sorted(out)


def _partitions(warehouse: Path, table: str) -> list[tuple[str, Path]]:
    return [(ds, io.partition_path(warehouse, table, ds)) for ds in io.list_partitions(warehouse, table)]


def _clear_leftovers(warehouse: Path) -> list[str]:
    """Remove what killed writers left under ``_staging`` (they may hold a user's rows); keep a
    scored table waiting for publish (``ds=D.pending``, rewritten later) and put back a
    partition a killed fallback publish had moved aside."""
    removed = []
    base = warehouse / STAGING
    if not base.is_dir():
        return removed
    for table_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        for child in sorted(table_dir.iterdir()):
            name = child.name
            if name.startswith("ds=") and ".old-" in name:
                io.clear_publish_leftovers(warehouse, table_dir.name, name[3:13])
            elif not name.endswith(".pending") and child.exists():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
                removed.append(str(child))
    return removed


def _swap(warehouse: Path, table: str, live: Path, transforms: dict[str, _erase.Transform],
          after=None) -> dict[str, list[int]]:
    """Rewrite ``live`` beside itself (a ``_staging`` folder) and swap the copy in."""
    staged = warehouse / STAGING / table / f"forget.{live.name}.{uuid.uuid4().hex[:12]}"
    staged.mkdir(parents=True)
    try:
        counts = _erase.copy_partition(live, staged, transforms)
        if after is not None:
            after(staged, counts)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    io.publish_dir(staged, live)
    return counts


def _update_dq(staged: Path, removed: int) -> None:
    """The day's books after removing ``removed`` clean rows: ``erased`` counts them; distinct
    users/items and the ts range are those of the rewritten table. Checked by the clean step's
    own reconciliation before the partition is swapped in."""
    path = staged / quality.DQ_SUMMARY_FILE
    if not path.exists():
        return
    summary = json.loads(path.read_text())
    t = pads.dataset(str(staged), format="parquet").to_table(columns=["user_id", "item_id", "ts"])
    micros = pc.cast(t["ts"], pa.timestamp("us"), safe=False).cast(pa.int64())
    lo_hi = pc.min_max(micros).as_py() if t.num_rows else {"min": None, "max": None}
    summary.update({
        "clean": summary["clean"] - removed,
        "erased": summary.get("erased", 0) + removed,
        "distinct_users": len(pc.unique(t["user_id"])),
        "distinct_items": len(pc.unique(t["item_id"])),
        "ts_min": quality.iso_micros(lo_hi["min"]),
        "ts_max": quality.iso_micros(lo_hi["max"]),
    })
    if summary["clean"] != t.num_rows:
        raise quality.ReconciliationError(
            f"{staged}: the summary says {summary['clean']} clean rows after the erasure, the "
            f"files hold {t.num_rows}")
    quality.reconcile(summary)
    path.write_text(json.dumps(summary, indent=2))


def _update_manifest(staged: Path, counts: dict) -> None:
    """Counts, per-file checksums and the table checksum of a rewritten published partition."""
    from recsys.score.publish import MANIFEST, file_checksums, read_table

    path = staged / MANIFEST
    if not path.exists():
        return
    manifest = json.loads(path.read_text())
    table = read_table(staged)
    per_source = table.group_by("source").aggregate([("user_id", "count_distinct")])
    files, checksum = file_checksums(staged)
    rows_in, rows_out = counts.get("", [0, 0])
    manifest.update({
        "row_count": table.num_rows, "user_count": len(pc.unique(table["user_id"])),
        "users_by_source": dict(zip(per_source["source"].to_pylist(),
                                    per_source["user_id_count_distinct"].to_pylist())),
        "files": files, "checksum": checksum,
    })
    manifest.setdefault("erasures", []).append(
        {"rows_removed": rows_in - rows_out, "at": dt.datetime.now(dt.timezone.utc).isoformat()})
    path.write_text(json.dumps(manifest, indent=2))


def _training_set_users(part: Path, ids: list[str]) -> np.ndarray | None:
    """The new user index of every old one (-1 for an erased user), or None when the training
    set has none of ``ids``."""
    t = pads.dataset(str(part / "user_map"), format="parquet").to_table()
    hit = pc.fill_null(pc.is_in(t["user_id"], value_set=pa.array(ids, pa.string())), False)
    if not pc.any(hit).as_py():
        return None
    old = t["user_idx"].to_numpy().astype(np.int64)
    keep = ~hit.to_numpy(zero_copy_only=False)
    remap = np.full(len(old), -1, dtype=np.int64)
    kept_old = np.sort(old[keep])  # dense again, in the old order (sorted ids)
    remap[kept_old] = np.arange(len(kept_old))
    return remap


def forget_users(cfg: Config, user_ids: list[str], *, warehouse: Path | None = None,
                 verify: bool = True) -> ForgetReport:
    """Erase ``user_ids`` from the warehouse (see the module docstring); return what was done.

    Raises :class:`ForgetIncomplete` when ``verify`` finds a trace left afterwards.
    """
    wh = Path(warehouse or cfg.paths.warehouse)
    home = Path(cfg.paths.home)
    ids = canonical_ids(user_ids)
    now = dt.datetime.now(dt.timezone.utc)
    leftovers = _clear_leftovers(wh)
    if leftovers:
        log.info("removed %d staging leftovers of killed runs", len(leftovers))

    # The training sets tell which model versions saw the users; read before any rewrite, so a
    # rerun after a crash still finds them.
    trained = {ds: _training_set_users(p, ids) for ds, p in _partitions(wh, TRAINING_SET)}
    with_users = {ds for ds, remap in trained.items() if remap is not None}

    key = erasures.load_key(home, create=True)
    added = erasures.append(wh, key, ids, now)

    from recsys import tracking  # MLflow (and torch) only for this part

    # A version whose training set is gone may have seen the users: tagged too.
    tagged = tracking.mark_versions_trained_on_erased(
        cfg, lambda ds: ds is None or ds in with_users or ds not in trained, now.isoformat())

    notes = _Notes()
    _erase_rows(wh, ids, notes)
    _erase_quarantine(wh, _erase.token_pattern(ids), notes)
    _erase_training_sets(wh, trained, notes)
    _erase_vectors(wh, ids, notes)
    _erase_pending(wh, ids, notes)
    # The versions' bundles keep the users' ids and learned vectors: rewritten without them
    # (after the warehouse, so a bundle that cannot be redacted does not hold up the rest).
    redacted = tracking.redact_versions(cfg, ids, now.isoformat())

    exports = _refresh_exports(wh, home, ids)
    traces = []
    if verify:
        traces = _erase.find_traces(wh, ids) + (_erase.find_traces(home / EXPORTS, ids)
                                                if (home / EXPORTS).is_dir() else [])
        artifacts = _local_dir(cfg.mlflow.artifact_location)
        if artifacts is not None and artifacts.is_dir():
            traces += _erase.find_traces(artifacts, ids)
    report = ForgetReport(users=len(ids), tombstoned=len(added),
                          versions_tagged=[f"{v.name} v{v.version}" for v in tagged],
                          versions_redacted=[f"{v.name} v{v.version}" for v in redacted],
                          partitions=notes.rewritten, rows_removed=notes.removed,
                          quarantine_blanked=notes.blanked, exports=exports, traces=traces)
    log.info("forget: %s", json.dumps({k: v for k, v in report.as_dict().items() if k != "traces"}))
    if traces:
        raise ForgetIncomplete(f"erased users are still found in {traces}")
    return report


def _local_dir(uri: str | None) -> Path | None:
    """The folder of a local artifact location (a path or ``file:`` URI); None for a remote one."""
    if not uri:
        return None
    if uri.startswith("file:"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(uri).path))
    return None if "://" in uri else Path(uri)


@dataclasses.dataclass
class _Notes:
    """What the rewrites did, for the report."""

    rewritten: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    removed: dict[str, int] = dataclasses.field(default_factory=dict)
    blanked: int = 0

    def add(self, table: str, name: str, n: int) -> None:
        self.rewritten.setdefault(table, []).append(name)
        self.removed[table] = self.removed.get(table, 0) + n


def _has(ids: list[str]):
    values = pa.array(ids, pa.string())
    return lambda col: pc.fill_null(pc.is_in(col, value_set=values), False)


def _removed(counts: dict, sub: str = "") -> int:
    rows_in, rows_out = counts.get(sub, [0, 0])
    return rows_in - rows_out


def _erase_rows(wh: Path, ids: list[str], notes: _Notes) -> None:
    """Tables keyed by ``user_id``: clean interactions (and their books), profiles, published
    recommendations (and their manifest)."""
    after = {INTERACTIONS: lambda staged, c: _update_dq(staged, _removed(c)),
             RECOMMENDATIONS: _update_manifest}
    for table in (INTERACTIONS, USERS, RECOMMENDATIONS):
        for ds, part in _partitions(wh, table):
            if _erase.any_row(part, "user_id", _has(ids)):
                c = _swap(wh, table, part, {"": _erase.drop_users("user_id", ids)}, after.get(table))
                notes.add(table, ds, _removed(c))


def _erase_quarantine(wh: Path, pattern: str, notes: _Notes) -> None:
    """Quarantined rows that mention a user keep reason and file; their payload is nulled."""
    for ds, part in _partitions(wh, QUARANTINE):
        n = _erase.count_rows(part, "raw", lambda col: _erase.mentions(col, pattern))
        if n:
            _swap(wh, QUARANTINE, part, {"": _erase.blank_payload(pattern)})
            notes.rewritten.setdefault(QUARANTINE, []).append(ds)
            notes.blanked += n


def _erase_training_sets(wh: Path, trained: dict[str, np.ndarray | None], notes: _Notes) -> None:
    """Rows, map entries and features of the users; indices renumbered; the day's books copied
    from the (already rewritten) clean partition, as the features step copies them."""
    for ds, remap in sorted(trained.items()):
        if remap is None:
            continue
        drop = _erase.remap_users(remap)

        def copy_dq(staged: Path, counts: dict, ds=ds) -> None:
            src = io.partition_path(wh, INTERACTIONS, ds) / quality.DQ_SUMMARY_FILE
            if src.exists() and (staged / quality.DQ_SUMMARY_FILE).exists():
                shutil.copyfile(src, staged / quality.DQ_SUMMARY_FILE)

        c = _swap(wh, TRAINING_SET, io.partition_path(wh, TRAINING_SET, ds),
                  {"interactions": drop, "user_map": drop, "user_features": drop}, copy_dq)
        notes.add(TRAINING_SET, ds, _removed(c, "interactions"))


def _erase_vectors(wh: Path, ids: list[str], notes: _Notes) -> None:
    """User vectors of every model version (the Spark scorer's copy of the models)."""
    def count_users(staged: Path, counts: dict) -> None:
        meta = staged / "_vectors.json"
        if meta.exists():
            doc = json.loads(meta.read_text())
            doc["users"] = counts[USERS][1]
            meta.write_text(json.dumps(doc, indent=2))

    for part in sorted((wh / MODEL_VECTORS).glob("model=*/version=*")):
        if io.is_complete(part) and _erase.any_row(part / USERS, "user_id", _has(ids)):
            c = _swap(wh, MODEL_VECTORS, part, {USERS: _erase.drop_users("user_id", ids)}, count_users)
            notes.add(MODEL_VECTORS, f"{part.parent.name}/{part.name}", _removed(c, USERS))
    aside = wh / MODEL_VECTORS / STAGING  # publish_dir's aside folder for model_vectors
    if aside.is_dir() and not any(aside.rglob("*.parquet")):
        shutil.rmtree(aside, ignore_errors=True)


def _erase_pending(wh: Path, ids: list[str], notes: _Notes) -> None:
    """A scored table waiting for publish (not read by consumers): rewritten file by file."""
    pending = wh / STAGING / RECOMMENDATIONS
    for folder in sorted(pending.glob("ds=*.pending")) if pending.is_dir() else []:
        n = _erase.rewrite_in_place(folder, _erase.drop_users("user_id", ids))
        if n:
            notes.add(f"{STAGING}/{RECOMMENDATIONS}", folder.name, n)


def _refresh_exports(wh: Path, home: Path, ids: list[str]) -> str | None:
    """Rewrite the consumer's CSV export (``recsys_consumer``) from the published table when it
    mentions a user; deleted when nothing is published any more."""
    csv = home / EXPORTS / EXPORT_CSV
    if not csv.exists() or not _erase.find_traces(csv.parent, ids):
        return None
    from recsys.steps.export import refresh_exports

    try:
        return refresh_exports(wh, csv.parent)["csv"]
    except FileNotFoundError:
        csv.unlink()
        return None
