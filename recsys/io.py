"""Read and write one ``ds`` partition of a warehouse table; publish atomically.

Layout: ``<warehouse>/<table>/ds=<YYYY-MM-DD>/``. Writers never write into that folder directly:
they write to ``<warehouse>/_staging/<table>/ds=<ds>.<token>/``, and :func:`publish_dir` swaps the
finished folder into place with renames. Spark's partition discovery ignores folders starting with
``_``, so staging is invisible to readers, and a killed writer leaves the old partition intact.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from pathlib import Path

from recsys.schema import DS, DS_FORMAT

SUCCESS = "_SUCCESS"


def parse_ds(ds: str) -> dt.date:
    """Parse a logical date; raise a clear error for anything but YYYY-MM-DD."""
    try:
        return dt.datetime.strptime(ds, DS_FORMAT).date()
    except (TypeError, ValueError):
        raise ValueError(f"ds must be a date formatted YYYY-MM-DD, got {ds!r}") from None


def table_path(root: Path | str, table: str) -> Path:
    return Path(root) / table


def partition_path(root: Path | str, table: str, ds: str) -> Path:
    parse_ds(ds)
    return table_path(root, table) / f"{DS}={ds}"


def staging_path(root: Path | str, table: str, ds: str) -> Path:
    """A fresh, unique staging folder for one attempt at writing ``table``/``ds``."""
    parse_ds(ds)
    return Path(root) / "_staging" / table / f"{DS}={ds}.{uuid.uuid4().hex[:12]}"


def is_complete(path: Path) -> bool:
    return (path / SUCCESS).exists()


def publish_dir(staged: Path, final: Path) -> None:
    """Move a finished staging folder to ``final``, replacing what was there.

    Both renames are atomic on one filesystem; between them the partition is briefly absent,
    never partial. The replaced folder is deleted only after the new one is in place.
    """
    staged, final = Path(staged), Path(final)
    if not staged.is_dir():
        raise FileNotFoundError(f"nothing staged at {staged}")
    (staged / SUCCESS).touch()
    final.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old.{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
    os.rename(staged, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def list_partitions(root: Path | str, table: str) -> list[str]:
    """The ``ds`` values of the complete partitions of ``table``, oldest first."""
    base = table_path(root, table)
    if not base.is_dir():
        return []
    out = []
    for child in base.iterdir():
        if child.is_dir() and child.name.startswith(f"{DS}=") and is_complete(child):
            out.append(child.name.split("=", 1)[1])
    return sorted(out)


def drop_old_partitions(root: Path | str, table: str, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` complete partitions; return the dropped ``ds`` values."""
    dropped = list_partitions(root, table)[:-keep] if keep > 0 else []
    for ds in dropped:
        shutil.rmtree(partition_path(root, table, ds))
    return dropped


def clear_staging(root: Path | str, table: str, ds: str) -> None:
    """Remove leftovers of earlier, killed attempts at ``table``/``ds``."""
    base = Path(root) / "_staging" / table
    if base.is_dir():
        for child in base.glob(f"{DS}={ds}.*"):
            shutil.rmtree(child, ignore_errors=True)


def write_json(doc: dict, path: Path | str) -> None:
    """Write a JSON document (a benchmark's figures, a report), creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))
