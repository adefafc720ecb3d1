"""Fault injection: the publisher is SIGKILLed at each step of a partition swap (``RECSYS_FAULT_AT``,
checked by ``recsys.io._fault``). After every kill, pyarrow and DuckDB readers of the table folder
must see exactly the complete old or the complete new partition, and the next run must clean up.

Each partition version has files of different row counts, so a reader that saw a partial
partition, or files of two versions, would return different rows.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from recsys import io

ROOT = Path(__file__).resolve().parent.parent
TABLE = "t"
OTHER, DAY, LATER = "2026-01-01", "2026-01-02", "2026-01-03"
FILES = {"other": 2, "old": 2, "new": 3, "next": 1, "later": 1}

CHILD = """
import sys
from pathlib import Path
from recsys import io
mode, action, *args = sys.argv[1:]
if mode == "fallback":
    io._renameat2 = None
if action == "publish":
    io.publish_dir(Path(args[0]), Path(args[1]))
else:
    io.drop_old_partitions(args[0], "t", keep=int(args[1]))
"""


def write_version(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True)
    for i in range(FILES[version]):
        n = i + 2
        pq.write_table(pa.table({"version": [version] * n, "file": [i] * n, "row": list(range(n))}),
                       folder / f"part-{i:05d}.parquet")
    return folder


def rows(**parts: str) -> list[tuple]:
    """What a reader must return for the partitions ``{ds: version}``."""
    out = [(ds, v, i, r) for ds, v in parts.items() for i in range(FILES[v]) for r in range(i + 2)]
    return sorted(out)


def read_pyarrow(table_dir: Path) -> list[tuple]:
    if not table_dir.is_dir():
        return []
    t = pads.dataset(str(table_dir), format="parquet", partitioning="hive").to_table()
    cols = [t.column(c).to_pylist() for c in ("ds", "version", "file", "row")]
    return sorted((str(ds), v, f, r) for ds, v, f, r in zip(*cols))


def read_duckdb(table_dir: Path) -> list[tuple]:
    con = duckdb.connect()
    try:
        return sorted(con.sql(
            "SELECT CAST(ds AS VARCHAR), version, file, row "
            f"FROM read_parquet('{table_dir}/*/*.parquet', hive_partitioning = true)").fetchall())
    except duckdb.IOException as e:
        if "No files found" in str(e):  # an empty table, not a broken one
            return []
        raise
    finally:
        con.close()


def assert_readers_see(table_dir: Path, want: list[tuple], when: str) -> None:
    for reader in (read_pyarrow, read_duckdb):
        seen = reader(table_dir)
        days = sorted({(r[0], r[1]) for r in seen})
        assert seen == want, f"{reader.__name__} {when}: saw partitions {days}"


def run_killed(step: str, mode: str, action: str, *args) -> None:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, io.FAULT_ENV: step, "PYTHONPATH": path}
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, action, *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, \
        f"the publisher was not killed at {step!r} (exit {proc.returncode}): {proc.stderr[-3000:]}"


def publish_fresh(root: Path, ds: str, version: str) -> Path:
    final = io.partition_path(root, TABLE, ds)
    io.publish_dir(write_version(io.staging_path(root, TABLE, ds), version), final)
    return final


def leftovers(root: Path, keep: Path | None = None) -> list[str]:
    """Folders under ``_staging/<table>`` (except the writer's untouched input ``keep``) and
    anything in the table folder that is not a ``ds=`` partition."""
    aside = root / "_staging" / TABLE
    out = [p.name for p in aside.iterdir() if p != keep] if aside.is_dir() else []
    return out + [p.name for p in (root / TABLE).iterdir() if not p.name.startswith("ds=")]


def setup(root: Path, live: bool) -> tuple[Path, Path, Path]:
    """A table with partition OTHER and (when ``live``) DAY=old; DAY=new staged like `publish`
    stages it, at a fixed, reused path."""
    publish_fresh(root, OTHER, "other")
    if live:
        publish_fresh(root, DAY, "old")
    staged = write_version(root / "_staging" / TABLE / f"ds={DAY}.pending", "new")
    return root / TABLE, staged, io.partition_path(root, TABLE, DAY)


# step -> which DAY partition readers must see after a kill there.
EXCHANGE = {"staged_complete": "old", "staged_moved": "old", "exchanged": "new", "discard_unmarked": "new"}
FIRST = {"staged_complete": None, "first_renamed": "new"}


@pytest.mark.parametrize("live, step, sees",
                         [(True, s, v) for s, v in EXCHANGE.items()] + [(False, s, v) for s, v in FIRST.items()],
                         ids=[f"replace-{s}" for s in EXCHANGE] + [f"first-{s}" for s in FIRST])
def test_crash_inside_publish_swap_never_deletes_live_partition(tmp_path, live, step, sees):
    if live and io._renameat2 is None:
        pytest.skip("no renameat2 here: publish uses the documented two-rename fallback")
    table_dir, staged, final = setup(tmp_path, live)
    run_killed(step, "exchange", "publish", staged, final)

    want = rows(**{OTHER: "other"}, **({DAY: sees} if sees else {}))
    assert_readers_see(table_dir, want, f"after a kill at {step}")
    assert [p.name for p in table_dir.iterdir() if not p.name.startswith("ds=")] == []
    if step in ("staged_moved", "exchanged", "discard_unmarked"):
        assert leftovers(tmp_path, keep=staged), "the kill should have left a swap folder in _staging"

    # The next publish of the partition cleans what the killed one left and works.
    publish_fresh(tmp_path, DAY, "next")
    assert_readers_see(table_dir, rows(**{OTHER: "other", DAY: "next"}), "after the next publish")
    assert leftovers(tmp_path, keep=staged) == []


FALLBACK = {"staged_complete": "old", "staged_moved": "old", "old_moved_away": None,
            "fallback_renamed": "new", "discard_unmarked": "new"}


@pytest.mark.parametrize("step, sees", FALLBACK.items(), ids=list(FALLBACK))
def test_fallback_publish_killed_at_any_step_never_shows_a_mix_and_the_next_run_repairs_it(
        tmp_path, step, sees):
    table_dir, staged, final = setup(tmp_path, live=True)
    run_killed(step, "fallback", "publish", staged, final)

    # Two renames: between them (and only there) DAY is absent; never partial, never mixed.
    want = rows(**{OTHER: "other"}, **({DAY: sees} if sees else {}))
    assert_readers_see(table_dir, want, f"after a kill at {step}")
    assert [p.name for p in table_dir.iterdir() if not p.name.startswith("ds=")] == []

    # What the next run does first (publish, or the writer's clear_staging) brings the old
    # partition back when the kill left none.
    io.clear_publish_leftovers(tmp_path, TABLE, DAY)
    assert_readers_see(table_dir, rows(**{OTHER: "other", DAY: sees or "old"}), "after the repair")
    publish_fresh(tmp_path, DAY, "next")
    assert_readers_see(table_dir, rows(**{OTHER: "other", DAY: "next"}), "after the next publish")
    assert leftovers(tmp_path, keep=staged) == []


@pytest.mark.parametrize("step", ["drop_moved", "discard_unmarked"])
def test_crash_inside_retention_removes_whole_partitions_only(tmp_path, step):
    for ds, version in ((OTHER, "other"), (DAY, "old"), (LATER, "later")):
        publish_fresh(tmp_path, ds, version)
    table_dir = tmp_path / TABLE
    run_killed(step, "exchange", "drop", tmp_path, 1)

    # Killed while dropping the first (oldest) partition: it is gone whole, the others intact.
    assert_readers_see(table_dir, rows(**{DAY: "old", LATER: "later"}), f"after a kill at {step}")
    assert io.list_partitions(tmp_path, TABLE) == [DAY, LATER]
    publish_fresh(tmp_path, LATER, "next")
    assert leftovers(tmp_path) == []
