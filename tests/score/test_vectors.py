"""Model vectors in the warehouse (recsys.score.vectors): layout, round trip, write-once,
the migration for versions without vectors, stale vectors, retention. No Spark."""
from __future__ import annotations

import logging

import numpy as np
import pyarrow.parquet as pq
import pytest

from recsys.schema import MODEL_VECTORS, STAGING, USER_VECTORS_ARROW
from recsys.score import vectors as V
from tests.score.conftest import fit_bundle, make_data


def _arrays(users=57, items=9, f=4, seed=0):
    rng = np.random.default_rng(seed)
    return (np.array([f"u{k}" for k in range(users)], object), rng.random((users, f), np.float32),
            np.array([f"i{k}" for k in range(items)], object), rng.random((items, f), np.float32))


def test_layout_round_trip_and_files(tmp_path, monkeypatch):
    monkeypatch.setattr(V, "FILE_ROWS", 25)
    monkeypatch.setattr(V, "ROW_GROUP_ROWS", 10)
    uid, u, iid, it = _arrays()
    path = V.write_vectors(tmp_path, "recsys_mf_bpr", "3", "run1", [(uid[:30], u[:30]), (uid[30:], u[30:])],
                           iid, it)
    assert path == tmp_path / MODEL_VECTORS / "model=recsys_mf_bpr" / "version=3"
    assert (path / "_SUCCESS").exists()
    files = sorted((path / "users").glob("*.parquet"))
    assert [pq.ParquetFile(f).metadata.num_rows for f in files] == [25, 25, 7]
    assert pq.ParquetFile(files[0]).metadata.num_row_groups == 3  # 10 + 10 + 5
    table = pq.read_table(path / "users")
    assert table.schema.equals(USER_VECTORS_ARROW)
    assert table["user_id"].to_pylist() == list(uid)
    np.testing.assert_array_equal(np.stack(table["vector"].to_pylist()), u)
    ids, vecs = V.read_item_vectors(path)
    assert list(ids) == list(iid)
    np.testing.assert_array_equal(vecs, it)
    info = V.read_info(path)
    assert (info["run_id"], info["factors"], info["users"], info["items"]) == ("run1", 4, 57, 9)
    assert not list((tmp_path / STAGING / MODEL_VECTORS).iterdir())  # nothing left in staging


def test_a_version_is_written_once(tmp_path):
    uid, u, iid, it = _arrays()
    first = V.write_vectors(tmp_path, "m", "1", "run1", [(uid, u)], iid, it)
    again = V.write_vectors(tmp_path, "m", "1", "run1", [(uid, u + 1)], iid, it)
    assert again == first
    np.testing.assert_array_equal(np.stack(pq.read_table(first / "users")["vector"].to_pylist()), u)


def test_bad_shapes_leave_nothing(tmp_path):
    uid, u, iid, it = _arrays()
    with pytest.raises(ValueError, match="factors"):
        V.write_vectors(tmp_path, "m", "1", "r", [(uid, u[:, :3])], iid, it)
    assert not V.vectors_path(tmp_path, "m", "1").exists()
    assert not list((tmp_path / STAGING / MODEL_VECTORS).iterdir())


def test_ensure_vectors_writes_missing_and_replaces_stale(tmp_path, caplog):
    data = make_data()
    bundle = fit_bundle(data, epochs=1)
    with caplog.at_level(logging.WARNING, logger="recsys.score.vectors"):
        path = V.ensure_vectors(tmp_path, "recsys_mf_bpr", "4", "runA", bundle)
    assert "writing them once from the loaded model" in caplog.text
    assert V.read_info(path)["source"] == "migration"
    table = pq.read_table(path / "users")
    assert table["user_id"].to_pylist() == list(data.user_ids)
    np.testing.assert_array_equal(np.stack(table["vector"].to_pylist()), bundle.model.user_vectors())
    ids, vecs = V.read_item_vectors(path)
    np.testing.assert_array_equal(vecs, bundle.model.item_vectors())

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="recsys.score.vectors"):
        assert V.ensure_vectors(tmp_path, "recsys_mf_bpr", "4", "runA", bundle) == path
    assert not caplog.text  # present and of this run: used as is

    # The registry was reset: version 4 is now another run's model.
    with caplog.at_level(logging.WARNING, logger="recsys.score.vectors"):
        V.ensure_vectors(tmp_path, "recsys_mf_bpr", "4", "runB", bundle)
    assert "belong to run runA" in caplog.text
    assert V.read_info(path)["run_id"] == "runB"


def test_ensure_vectors_refuses_a_model_without_vectors(tmp_path):
    class NotFactorized:
        name, factorized = "neumf", False

    class B:
        model = NotFactorized()

    with pytest.raises(ValueError, match="score.engine=local"):
        V.ensure_vectors(tmp_path, "recsys_neumf", "1", "r", B())


def test_retention_keeps_the_newest_and_the_protected(tmp_path):
    uid, u, iid, it = _arrays(users=3, items=2)
    for v in ("1", "2", "3", "10", "11"):
        V.write_vectors(tmp_path, "m", v, f"run{v}", [(uid, u)], iid, it)
    assert V.drop_old_versions(tmp_path, "m", keep=2, protect={"2", None}) == ["1", "3"]
    left = sorted(p.name for p in (tmp_path / MODEL_VECTORS / "model=m").iterdir())
    assert left == ["version=10", "version=11", "version=2"]
