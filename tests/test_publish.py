"""Publishing: each kind of bad table is rejected, the live partition survives, retention."""
from __future__ import annotations

import datetime as dt
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys import io
from recsys.schema import RECOMMENDATIONS_ARROW
from recsys.score.engine import pending_path
from recsys.score.publish import MANIFEST, publish, read_table, verify_partition
from recsys.score.validate import Reference, TableRejected

TS = dt.datetime(2024, 3, 2, 4, 0, tzinfo=dt.timezone.utc)
# (user_id, rank, item_id, score, source)
GOOD = [
    ("u1", 1, "i3", 0.9, "model"), ("u1", 2, "i4", 0.5, "model"),
    ("u2", 1, "i1", 0.8, "model"), ("u2", 2, "i3", 0.8, "model"),
    ("u3", 1, "i1", 7.0, "popular"), ("u3", 2, "i3", 5.0, "popular"),
]
REF = Reference(active_users=np.array(["u1", "u2", "u3"]),
                seen_users=np.array(["u1", "u1", "u2"]), seen_items=np.array(["i1", "i2", "i2"]),
                unavailable_items=np.array(["i9"]))


def table(rows, version="3", schema=RECOMMENDATIONS_ARROW) -> pa.Table:
    cols = list(zip(*rows))
    n = len(rows)
    data = {"user_id": cols[0], "rank": cols[1], "item_id": cols[2], "score": cols[3],
            "source": cols[4], "model_name": ["recsys_mf_bpr"] * n,
            "model_version": version if isinstance(version, list) else [version] * n,
            "mlflow_run_id": ["run1"] * n, "generated_at": [TS] * n,
            "because": [[]] * n,
            "because_reason": [{"model": "history", "fold_in": "history", "popular": "popular"}.get(s, s)
                               for s in cols[4]]}
    return pa.table({f.name: data[f.name] for f in schema}, schema=schema)


def stage(warehouse, ds, tbl) -> None:
    folder = pending_path(warehouse, ds)
    folder.mkdir(parents=True)
    pq.write_table(tbl, folder / "part-00000.parquet")


def do_publish(warehouse, ds="2024-03-02", ref=REF, **kw):
    return publish(warehouse, ds, top_n=2, keep=kw.pop("keep", 3), reference=ref, **kw)


def replace(rows, i, **changes):
    names = ("user_id", "rank", "item_id", "score", "source")
    row = dict(zip(names, rows[i]), **changes)
    return rows[:i] + [tuple(row[n] for n in names)] + rows[i + 1:]


def test_good_table_is_published_with_manifest_and_success(tmp_path):
    stage(tmp_path, "2024-03-02", table(GOOD))
    manifest = do_publish(tmp_path)
    final = io.partition_path(tmp_path, "recommendations", "2024-03-02")
    assert io.is_complete(final) and verify_partition(final)
    assert not pending_path(tmp_path, "2024-03-02").exists()
    on_disk = json.loads((final / MANIFEST).read_text())
    assert on_disk == manifest
    assert (manifest["row_count"], manifest["user_count"]) == (6, 3)
    assert manifest["users_by_source"] == {"model": 2, "popular": 1}
    assert (manifest["model_name"], manifest["model_version"], manifest["mlflow_run_id"]) == \
        ("recsys_mf_bpr", "3", "run1")
    assert [f["name"] for f in manifest["schema"]][-1] == "ds"
    assert read_table(final).equals(table(GOOD))


BAD = {
    "active_users": [r for r in GOOD if r[0] != "u3"],
    "duplicate_items": replace(GOOD, 1, item_id="i3", score=0.9),
    "seen_items": replace(GOOD, 1, item_id="i2"),
    "unavailable_items": replace(GOOD, 1, item_id="i9"),
    "scores_non_increasing": replace(GOOD, 1, score=0.95),
    "ranks": replace(GOOD, 1, rank=3),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_each_kind_of_bad_table_is_rejected_and_the_live_partition_survives(tmp_path, kind):
    stage(tmp_path, "2024-03-02", table(GOOD, version="2"))
    do_publish(tmp_path)
    stage(tmp_path, "2024-03-02", table(BAD[kind]))
    with pytest.raises(TableRejected) as err:
        do_publish(tmp_path)
    failed = [c.name for c in err.value.checks if not c.ok]
    assert failed == [kind]
    assert kind in str(err.value)
    final = io.partition_path(tmp_path, "recommendations", "2024-03-02")
    assert verify_partition(final)
    assert set(read_table(final).column("model_version").to_pylist()) == {"2"}
    assert pending_path(tmp_path, "2024-03-02").exists()  # kept for inspection


def test_wrong_schema_is_rejected(tmp_path):
    schema = RECOMMENDATIONS_ARROW.set(3, pa.field("score", pa.float64()))
    stage(tmp_path, "2024-03-02", table(GOOD, schema=schema))
    with pytest.raises(TableRejected, match="schema: expected .*score:float"):
        do_publish(tmp_path)


def test_missing_column_is_rejected(tmp_path):
    stage(tmp_path, "2024-03-02", table(GOOD).drop_columns(["mlflow_run_id"]))
    with pytest.raises(TableRejected, match="schema"):
        do_publish(tmp_path)


def test_mixed_provenance_is_rejected(tmp_path):
    tbl = table(GOOD, version=["3", "3", "3", "3", "4", "4"])
    stage(tmp_path, "2024-03-02", tbl)
    with pytest.raises(TableRejected, match="provenance: more than one value in model_version"):
        do_publish(tmp_path)


def test_nulls_are_rejected(tmp_path):
    nullable = RECOMMENDATIONS_ARROW.set(2, pa.field("item_id", pa.string(), nullable=True))
    stage(tmp_path, "2024-03-02", table(replace(GOOD, 1, item_id=None), schema=nullable))
    with pytest.raises(TableRejected, match=r"nulls: nulls in item_id \(1\)"):
        do_publish(tmp_path)


def test_empty_table_is_rejected(tmp_path):
    stage(tmp_path, "2024-03-02", RECOMMENDATIONS_ARROW.empty_table())
    with pytest.raises(TableRejected, match="not_empty"):
        do_publish(tmp_path, ref=None)


def test_nothing_staged_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing staged for ds=2024-03-02"):
        do_publish(tmp_path)


def test_force_skips_reference_checks_only(tmp_path):
    stage(tmp_path, "2024-03-02", table(BAD["seen_items"]))
    manifest = do_publish(tmp_path, force=True)
    assert manifest["forced"] is True
    assert {"name": "seen_items", "ok": False, "skipped": True} in manifest["checks"]
    stage(tmp_path, "2024-03-02", table(BAD["duplicate_items"]))
    with pytest.raises(TableRejected, match="duplicate_items"):
        do_publish(tmp_path, force=True)


def test_retention_keeps_the_newest_partitions(tmp_path):
    for day in ("2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04"):
        stage(tmp_path, day, table(GOOD))
        do_publish(tmp_path, ds=day, keep=2)
    assert io.list_partitions(tmp_path, "recommendations") == ["2024-03-03", "2024-03-04"]


def test_retention_never_drops_the_partition_just_published(tmp_path):
    for day in ("2024-03-03", "2024-03-04"):
        stage(tmp_path, day, table(GOOD))
        do_publish(tmp_path, ds=day, keep=2)
    stage(tmp_path, "2024-03-01", table(GOOD, version="7"))  # backfill of an older day
    manifest = do_publish(tmp_path, ds="2024-03-01", keep=2)
    final = io.partition_path(tmp_path, "recommendations", "2024-03-01")
    assert manifest["model_version"] == "7" and verify_partition(final)
    assert io.list_partitions(tmp_path, "recommendations") == ["2024-03-01", "2024-03-03", "2024-03-04"]
    # The next publish of a newer day applies retention to the backfilled day again.
    stage(tmp_path, "2024-03-05", table(GOOD))
    do_publish(tmp_path, ds="2024-03-05", keep=2)
    assert io.list_partitions(tmp_path, "recommendations") == ["2024-03-04", "2024-03-05"]


def test_leftovers_of_a_killed_publish_are_cleaned_even_when_the_next_table_is_rejected(tmp_path):
    stage(tmp_path, "2024-03-02", table(GOOD, version="2"))
    do_publish(tmp_path)
    final = io.partition_path(tmp_path, "recommendations", "2024-03-02")
    # What killed publishes leave: a legacy `.ds=D.old.*` copy inside the table folder (old code)
    # and a swapped-out old partition under _staging (current code).
    shutil.copytree(final, final.parent / ".ds=2024-03-02.old.0a1b2c3d")
    shutil.copytree(final, tmp_path / "_staging" / "recommendations" / "ds=2024-03-02.swap-0123456789ab")
    stage(tmp_path, "2024-03-02", table(BAD["ranks"]))
    with pytest.raises(TableRejected):
        do_publish(tmp_path)
    assert sorted(p.name for p in final.parent.iterdir()) == ["ds=2024-03-02"]
    assert sorted(p.name for p in (tmp_path / "_staging" / "recommendations").iterdir()) == \
        ["ds=2024-03-02.pending"]  # the rejected table, kept for inspection
    assert verify_partition(final)
    assert set(read_table(final).column("model_version").to_pylist()) == {"2"}


def test_tampered_partition_fails_verification(tmp_path):
    stage(tmp_path, "2024-03-02", table(GOOD))
    do_publish(tmp_path)
    final = io.partition_path(tmp_path, "recommendations", "2024-03-02")
    pq.write_table(table(GOOD[:2]), final / "part-00000.parquet")
    assert not verify_partition(final)
