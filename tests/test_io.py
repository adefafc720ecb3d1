"""Partition paths and the atomic publish swap."""
from __future__ import annotations

import pytest

from recsys import io


def _stage(root, ds, content):
    staged = io.staging_path(root, "t", ds)
    staged.mkdir(parents=True)
    (staged / "part-0.parquet").write_text(content)
    return staged


def test_publish_replaces_partition_and_marks_success(tmp_path):
    final = io.partition_path(tmp_path, "t", "2026-01-01")
    io.publish_dir(_stage(tmp_path, "2026-01-01", "v1"), final)
    io.publish_dir(_stage(tmp_path, "2026-01-01", "v2"), final)
    assert (final / "part-0.parquet").read_text() == "v2"
    assert io.is_complete(final)
    # Nothing is left beside the partition: no old copy, no staging folder visible to readers.
    assert sorted(p.name for p in final.parent.iterdir()) == ["ds=2026-01-01"]
    assert io.list_partitions(tmp_path, "t") == ["2026-01-01"]


def test_incomplete_partitions_are_not_listed_and_retention_keeps_newest(tmp_path):
    for ds in ("2026-01-01", "2026-01-02", "2026-01-03"):
        io.publish_dir(_stage(tmp_path, ds, ds), io.partition_path(tmp_path, "t", ds))
    io.partition_path(tmp_path, "t", "2026-01-04").mkdir()  # a folder without _SUCCESS
    assert io.list_partitions(tmp_path, "t") == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert io.drop_old_partitions(tmp_path, "t", keep=2) == ["2026-01-01"]
    assert io.list_partitions(tmp_path, "t") == ["2026-01-02", "2026-01-03"]


@pytest.mark.parametrize("ds", ["2026-13-01", "20260101", "", None, "2026-01-01; rm -rf /"])
def test_bad_ds_is_a_clear_error(tmp_path, ds):
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        io.partition_path(tmp_path, "t", ds)


def test_publish_without_staged_folder_fails_and_keeps_old(tmp_path):
    final = io.partition_path(tmp_path, "t", "2026-01-01")
    io.publish_dir(_stage(tmp_path, "2026-01-01", "v1"), final)
    with pytest.raises(FileNotFoundError):
        io.publish_dir(tmp_path / "_staging" / "t" / "missing", final)
    assert (final / "part-0.parquet").read_text() == "v1"
