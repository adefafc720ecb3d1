"""Partition paths and the atomic publish swap."""
from __future__ import annotations

import ctypes
import errno
import logging
import shutil
import sys

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
    # ...and the replaced partition was deleted from staging too.
    assert list((tmp_path / "_staging" / "t").iterdir()) == []


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


def _contents(root, ds="2026-01-01"):
    final = io.partition_path(root, "t", ds)
    return (final / "part-0.parquet").read_text() if final.exists() else None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux only")
def test_replacing_a_partition_is_one_exchange_of_a_complete_folder(tmp_path, monkeypatch):
    final = io.partition_path(tmp_path, "t", "2026-01-01")
    io.publish_dir(_stage(tmp_path, "2026-01-01", "v1"), final)
    seen = []
    exchange = io._exchange

    def spy(a, b):
        # At the instant of the swap: the new folder is complete and outside the table folder.
        seen.append((a.parent == tmp_path / "_staging" / "t", io.is_complete(a), _contents(tmp_path)))
        return exchange(a, b)

    monkeypatch.setattr(io, "_exchange", spy)
    io.publish_dir(_stage(tmp_path, "2026-01-01", "v2"), final)
    assert seen == [(True, True, "v1")]
    assert _contents(tmp_path) == "v2"


def _unsupported(*args):
    ctypes.set_errno(errno.EINVAL)  # what a file system without RENAME_EXCHANGE answers
    return -1


@pytest.mark.parametrize("renameat2", [None, _unsupported], ids=["no-renameat2", "EINVAL"])
def test_without_exchange_publish_falls_back_to_two_renames_and_warns(tmp_path, monkeypatch, caplog,
                                                                     renameat2):
    monkeypatch.setattr(io, "_renameat2", renameat2)
    monkeypatch.setattr(io, "_warned_no_exchange", False)
    final = io.partition_path(tmp_path, "t", "2026-01-01")
    io.publish_dir(_stage(tmp_path, "2026-01-01", "v1"), final)
    with caplog.at_level(logging.WARNING, logger="recsys.io"):
        io.publish_dir(_stage(tmp_path, "2026-01-01", "v2"), final)
    assert _contents(tmp_path) == "v2" and io.is_complete(final)
    assert "no atomic directory exchange" in caplog.text
    assert sorted(p.name for p in final.parent.iterdir()) == ["ds=2026-01-01"]
    assert list((tmp_path / "_staging" / "t").iterdir()) == []


def test_exchange_errors_other_than_unsupported_are_raised_and_keep_the_live_partition(tmp_path, monkeypatch):
    def busy(*args):
        ctypes.set_errno(errno.EBUSY)
        return -1

    final = io.partition_path(tmp_path, "t", "2026-01-01")
    io.publish_dir(_stage(tmp_path, "2026-01-01", "v1"), final)
    monkeypatch.setattr(io, "_renameat2", busy)
    with pytest.raises(OSError) as err:
        io.publish_dir(_stage(tmp_path, "2026-01-01", "v2"), final)
    assert err.value.errno == errno.EBUSY
    assert _contents(tmp_path) == "v1" and io.is_complete(final)


def test_partition_moved_aside_by_a_killed_fallback_publish_is_restored_by_the_next_run(tmp_path):
    # The state a fallback publish killed between its two renames leaves: no live partition,
    # the old one under _staging. The next writer's clear_staging restores it before cleaning.
    final = io.partition_path(tmp_path, "t", "2026-01-01")
    io.publish_dir(_stage(tmp_path, "2026-01-01", "v1"), final)
    aside = tmp_path / "_staging" / "t" / "ds=2026-01-01.old-0123456789ab"
    final.rename(aside)
    io.clear_staging(tmp_path, "t", "2026-01-01")
    assert _contents(tmp_path) == "v1" and io.is_complete(final)
    assert list((tmp_path / "_staging" / "t").iterdir()) == []


@pytest.mark.parametrize("live", [True, False], ids=["live-partition-present", "live-partition-missing"])
def test_legacy_dot_old_folder_in_the_table_is_cleaned_by_the_next_publish(tmp_path, live):
    # The old publish_dir, killed between its renames, left `.ds=D.old.<hex>` inside the table.
    for ds in ("2026-01-01", "2026-01-02"):
        io.publish_dir(_stage(tmp_path, ds, f"{ds} v1"), io.partition_path(tmp_path, "t", ds))
    day1 = io.partition_path(tmp_path, "t", "2026-01-01")
    legacy = day1.parent / ".ds=2026-01-01.old.0a1b2c3d"
    if live:
        shutil.copytree(day1, legacy)
    else:
        day1.rename(legacy)
    io.publish_dir(_stage(tmp_path, "2026-01-02", "2026-01-02 v2"), io.partition_path(tmp_path, "t", "2026-01-02"))
    assert sorted(p.name for p in day1.parent.iterdir()) == ["ds=2026-01-01", "ds=2026-01-02"]
    assert _contents(tmp_path, "2026-01-01") == "2026-01-01 v1"
    assert _contents(tmp_path, "2026-01-02") == "2026-01-02 v2"


def test_retention_never_drops_the_partition_just_published(tmp_path):
    for ds in ("2026-01-03", "2026-01-04", "2026-01-01"):  # a backfill of an older day last
        io.publish_dir(_stage(tmp_path, ds, ds), io.partition_path(tmp_path, "t", ds))
    assert io.drop_old_partitions(tmp_path, "t", keep=2, protect="2026-01-01") == []
    assert io.list_partitions(tmp_path, "t") == ["2026-01-01", "2026-01-03", "2026-01-04"]
    io.publish_dir(_stage(tmp_path, "2026-01-02", "x"), io.partition_path(tmp_path, "t", "2026-01-02"))
    assert io.drop_old_partitions(tmp_path, "t", keep=2, protect=["2026-01-02"]) == ["2026-01-01"]
    assert io.list_partitions(tmp_path, "t") == ["2026-01-02", "2026-01-03", "2026-01-04"]
    # Dropped partitions leave nothing behind, in the table or in staging.
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == \
        ["ds=2026-01-02", "ds=2026-01-03", "ds=2026-01-04"]
    assert list((tmp_path / "_staging" / "t").iterdir()) == []
