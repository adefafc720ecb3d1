"""Read and write one ``ds`` partition of a warehouse table; publish atomically.

Layout: ``<warehouse>/<table>/ds=<YYYY-MM-DD>/``. Writers never write into that folder directly:
they write to ``<warehouse>/_staging/<table>/ds=<ds>.<token>/``, and :func:`publish_dir` swaps the
finished folder into place. Everything a publish moves aside (the replaced partition, the leftovers
of a killed publish, partitions dropped by retention) lives under ``<warehouse>/_staging/<table>/``,
never inside the table folder, so Spark, pyarrow, DuckDB and Hive globs over ``<table>/*/`` see
only ``ds=`` partitions. See :func:`publish_dir` for the crash guarantees.
"""
from __future__ import annotations

import ctypes
import datetime as dt
import errno
import json
import logging
import os
import shutil
import signal
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path

from recsys.schema import DS, DS_FORMAT, STAGING

SUCCESS = "_SUCCESS"

FAULT_ENV = "RECSYS_FAULT_AT"

log = logging.getLogger(__name__)


def _fault(step: str) -> None:
    """Fault injection for tests: SIGKILL this process at ``step`` when ``$RECSYS_FAULT_AT`` names it."""
    if os.environ.get(FAULT_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


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
    return Path(root) / STAGING / table / f"{DS}={ds}.{uuid.uuid4().hex[:12]}"


def is_complete(path: Path) -> bool:
    return (path / SUCCESS).exists()


# --- atomic directory exchange ------------------------------------------------------------------

AT_FDCWD = -100
RENAME_EXCHANGE = 2


def _load_renameat2():
    """libc's ``renameat2`` (Linux, glibc >= 2.28), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2 = _load_renameat2()
# What a kernel or file system without RENAME_EXCHANGE answers.
_EXCHANGE_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP,
                         getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}


def _exchange(a: Path, b: Path) -> bool:
    """Swap the two existing paths ``a`` and ``b`` in one syscall; False when the platform or the
    file system cannot (nothing was changed then). Other errors raise ``OSError``."""
    if _renameat2 is None:
        return False
    if _renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _EXCHANGE_UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    """Flush every file of ``folder`` and the folders themselves, so a rename publishes durable data."""
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _aside_dir(final: Path) -> Path:
    """Where publishes of ``final`` (``<warehouse>/<table>/ds=D``) put what they move out of the
    table: ``<warehouse>/_staging/<table>/``, outside the table folder."""
    return final.parent.parent / STAGING / final.parent.name


def _aside(final: Path, kind: str) -> Path:
    return _aside_dir(final) / f"{final.name}.{kind}-{uuid.uuid4().hex[:12]}"


def _discard(folder: Path) -> None:
    """Delete a folder that is no longer (or never was) live; ``_SUCCESS`` goes first so a half
    deleted folder is never taken for a complete partition."""
    (folder / SUCCESS).unlink(missing_ok=True)
    _fault("discard_unmarked")
    shutil.rmtree(folder, ignore_errors=True)


_warned_no_exchange = False


def publish_dir(staged: Path, final: Path) -> None:
    """Move a finished staging folder to ``final``, replacing what was there.

    ``_SUCCESS`` is written into ``staged`` and every file of it fsync'd first. Then:

    * no live ``final``: one ``rename(staged, final)``;
    * otherwise ``staged`` is renamed to a unique ``<warehouse>/_staging/<table>/ds=D.swap-<token>``
      and exchanged with ``final`` by ``renameat2(RENAME_EXCHANGE)`` (Linux): one syscall, so a
      reader sees the complete old or the complete new partition, at every instant, even if this
      process is killed. The old partition, now at the ``swap`` path outside the table folder, is
      deleted afterwards.

    A publish killed at any point leaves ``final`` complete (old or new) and at most a ``swap``
    folder under ``_staging``, removed by the next publish or :func:`clear_staging` of that
    partition. A kill between the rename to ``swap`` and the exchange keeps the old partition
    live and discards the staged copy: stage again (rerun the writer), then publish.

    Fallback, where there is no exchange (not Linux, glibc < 2.28, or a file system answering
    EINVAL/ENOSYS/EOPNOTSUPP, e.g. some network file systems): ``rename(final,
    _staging/.../ds=D.old-<token>)`` then ``rename(swap, final)``. POSIX cannot replace a non-empty
    directory in one rename, so **between these two renames ``final`` is absent**: readers then see
    neither partition (never a mix). If killed there, the old partition waits under ``_staging``
    and the next publish or :func:`clear_staging` of that partition renames it back. A warning is
    logged once per process when this fallback is used.
    """
    global _warned_no_exchange
    staged, final = Path(staged), Path(final)
    if not staged.is_dir():
        raise FileNotFoundError(f"nothing staged at {staged}")
    _recover(final)
    with open(staged / SUCCESS, "wb") as f:
        os.fsync(f.fileno())
    _fsync_tree(staged)
    _fault("staged_complete")
    final.parent.mkdir(parents=True, exist_ok=True)
    if not final.exists():
        os.rename(staged, final)
        _fault("first_renamed")
        _fsync_dir(final.parent)
        _fsync_dir(staged.parent)
        return
    aside = _aside_dir(final)
    aside.mkdir(parents=True, exist_ok=True)
    swap = _aside(final, "swap")
    os.rename(staged, swap)
    _fault("staged_moved")
    if _exchange(swap, final):
        _fault("exchanged")
        _fsync_dir(final.parent)
        _fsync_dir(aside)
        _discard(swap)  # now the old partition
        return
    if not _warned_no_exchange:
        _warned_no_exchange = True
        log.warning("no atomic directory exchange (renameat2) for %s: publishing with two renames; "
                    "readers briefly see no partition", final)
    old = _aside(final, "old")
    os.rename(final, old)
    _fault("old_moved_away")
    os.rename(swap, final)
    _fault("fallback_renamed")
    _fsync_dir(final.parent)
    _fsync_dir(aside)
    _discard(old)


def publish_new_dir(staged: Path, final: Path) -> bool:
    """Publish a finished staging folder as ``final`` when nothing is there yet (write-once data,
    e.g. a model version's vectors); return False, and delete ``staged``, when ``final`` exists.

    ``_SUCCESS`` is written and every file fsync'd first, then one ``rename``: readers see the
    whole folder or none. Two writers racing for the same ``final``: the first rename wins, the
    other finds ``final`` non-empty (``ENOTEMPTY``/``EEXIST``) and discards its copy.
    """
    staged, final = Path(staged), Path(final)
    if not staged.is_dir():
        raise FileNotFoundError(f"nothing staged at {staged}")
    with open(staged / SUCCESS, "wb") as f:
        os.fsync(f.fileno())
    _fsync_tree(staged)
    final.parent.mkdir(parents=True, exist_ok=True)
    if not final.exists():
        try:
            os.rename(staged, final)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        else:
            _fsync_dir(final.parent)
            return True
    _discard(staged)
    return False


def _recover(final: Path) -> list[Path]:
    """Repair what killed publishes of ``final`` left behind; return the paths handled.

    ``ds=D.swap-*`` (an exchanged-out old partition, or a staged copy never exchanged in) and
    ``*.drop-*`` (partitions retention was deleting) are deleted. ``ds=D.old-*`` (fallback path) is
    renamed back to ``final`` when ``final`` is missing, deleted otherwise. Legacy ``.ds=*.old.*``
    folders inside the table folder (left by the publish code before the exchange) are handled the
    same way, for every ``ds`` of the table, since they break readers of the whole table.
    """
    done: list[Path] = []

    def restore_or_discard(leftover: Path, live: Path) -> None:
        if not live.exists() and is_complete(leftover):
            log.warning("restoring %s from %s, left by a killed publish", live, leftover)
            os.rename(leftover, live)
        else:
            log.info("removing %s, left by a killed publish", leftover)
            _discard(leftover)
        done.append(leftover)

    aside = _aside_dir(final)
    if aside.is_dir():
        for p in sorted(aside.glob(f"{final.name}.old-*")):
            restore_or_discard(p, final)
        for p in sorted(aside.glob(f"{final.name}.swap-*")) + sorted(aside.glob("*.drop-*")):
            log.info("removing %s, left by a killed publish", p)
            _discard(p)
            done.append(p)
    if final.parent.is_dir():
        for p in sorted(final.parent.glob(".*.old.*")):
            if p.is_dir():
                restore_or_discard(p, final.parent / p.name[1:].rsplit(".old.", 1)[0])
    return done


def clear_publish_leftovers(root: Path | str, table: str, ds: str) -> list[Path]:
    """Repair or remove what a killed publish of ``table``/``ds`` left (see :func:`publish_dir`);
    :func:`publish_dir` and :func:`clear_staging` call it. Returns the leftovers handled."""
    return _recover(partition_path(root, table, ds))


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


def drop_old_partitions(root: Path | str, table: str, keep: int,
                        protect: str | Iterable[str] = ()) -> list[str]:
    """Delete all but the newest ``keep`` complete partitions, never one in ``protect`` (a ``ds``
    or several: pass the ``ds`` just published); return the dropped ``ds`` values.

    ``keep <= 0`` drops nothing. Each partition is first renamed out of the table folder (it
    disappears whole) and then deleted.
    """
    protected = {protect} if isinstance(protect, str) else set(protect)
    partitions = list_partitions(root, table)
    newest = set(partitions[-keep:]) if keep > 0 else set(partitions)
    dropped = [ds for ds in partitions if ds not in newest and ds not in protected]
    for ds in dropped:
        live = partition_path(root, table, ds)
        gone = _aside(live, "drop")
        gone.parent.mkdir(parents=True, exist_ok=True)
        os.rename(live, gone)
        _fault("drop_moved")
        _discard(gone)
    return dropped


def clear_staging(root: Path | str, table: str, ds: str) -> None:
    """Remove leftovers of earlier, killed attempts at ``table``/``ds`` (writers' and publishes';
    a partition a killed fallback publish had moved aside is restored first)."""
    clear_publish_leftovers(root, table, ds)
    base = Path(root) / STAGING / table
    if base.is_dir():
        for child in base.glob(f"{DS}={ds}.*"):
            shutil.rmtree(child, ignore_errors=True)


def write_json(doc: dict, path: Path | str) -> None:
    """Write a JSON document (a benchmark's figures, a report), creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))
