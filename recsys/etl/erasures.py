"""The tombstone of erased users: keyed hashes of their ids, read by the clean step.

``recsys forget`` appends one row per erased user to ``<warehouse>/erasures/`` (schema
``ERASURES_ARROW``): ``user_key`` = hex SHA-256 of ``<erasure key>:<canonical user id>``, the
``key_id`` fingerprint of the key, and ``erased_at``. The id itself is never stored. The clean
step computes the same hash of every raw row's user id (Spark ``sha2``, DuckDB ``sha256``: no
UDF) and files a match under ``erased_user``.

Why a keyed hash: a plain SHA-256 of ids such as ``u42`` is reversed by hashing every plausible
id; with a secret key kept outside the warehouse, someone who can read the warehouse cannot tell
who was erased, while the pipeline, which holds the key, still recognises the user. The key comes
from ``$RECSYS_ERASURE_KEY`` or the file ``$RECSYS_HOME/secrets/erasure.key`` (created, mode 0600,
by the first ``recsys forget``). Losing or changing the key makes the tombstone unreadable: the
clean step then refuses to run (:class:`ErasureKeyError`) rather than let erased users back in.

pyarrow only (no Spark): the forget step, the clean step and the DuckDB engine all use it.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import secrets
import uuid
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from recsys.schema import ERASURES, ERASURES_ARROW, STAGING

KEY_ENV = "RECSYS_ERASURE_KEY"
KEY_FILE = Path("secrets") / "erasure.key"  # under paths.home


class ErasureKeyError(RuntimeError):
    """The tombstone cannot be read: no erasure key, or not the key its rows were made with."""


@dataclasses.dataclass(frozen=True)
class Erasures:
    """What the clean rules need: the hash prefix and the erased users' keys."""

    key: str
    user_keys: frozenset[str]

    @property
    def prefix(self) -> str:
        """What is hashed before the canonical user id (SQL: ``sha2(prefix || user_id)``)."""
        return f"{self.key}:"


def key_path(home: Path | str) -> Path:
    return Path(home) / KEY_FILE


def load_key(home: Path | str, create: bool = False) -> str | None:
    """The erasure key: ``$RECSYS_ERASURE_KEY``, else ``<home>/secrets/erasure.key``; with
    ``create`` a new random key is written there (mode 0600) when neither exists."""
    env = os.environ.get(KEY_ENV)
    if env:
        return env.strip()
    path = key_path(home)
    if path.exists():
        return path.read_text().strip()
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # fails if a concurrent forget created it first: then use theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()


def key_id(key: str) -> str:
    """A fingerprint of the key (recorded with each row; the key cannot be derived from it)."""
    return hashlib.sha256(b"recsys-erasure-key-id\0" + key.encode()).hexdigest()[:16]


def user_key(key: str, user_id: str) -> str:
    """The tombstone's hash of a canonical user id: SHA-256 of ``<key>:<user_id>`` (UTF-8), hex."""
    return hashlib.sha256(f"{key}:{user_id}".encode()).hexdigest()


def table_folder(warehouse: Path | str) -> Path:
    return Path(warehouse) / ERASURES


def read_table(warehouse: Path | str) -> pa.Table:
    """Every tombstone row (an empty table when nothing was ever erased)."""
    files = sorted(p for p in table_folder(warehouse).glob("*.parquet")
                   if not p.name.startswith(("_", ".")))
    if not files:
        return ERASURES_ARROW.empty_table()
    return pa.concat_tables([pq.read_table(f, schema=ERASURES_ARROW) for f in files])


def read_erasures(warehouse: Path | str, home: Path | str) -> Erasures | None:
    """The tombstone with its key, or None when no user was ever erased.

    Raises :class:`ErasureKeyError` when there are rows but no key, or rows made with another
    key: the clean step must not run blind to erasures.
    """
    table = read_table(warehouse)
    if table.num_rows == 0:
        return None
    key = load_key(home)
    if key is None:
        raise ErasureKeyError(
            f"{table_folder(warehouse)} lists {table.num_rows} erased users but there is no erasure "
            f"key (${KEY_ENV} or {key_path(home)}): restore the key the erasures were made with")
    ids = set(table.column("key_id").to_pylist())
    if ids != {key_id(key)}:
        raise ErasureKeyError(
            f"the erasure key in use (id {key_id(key)}) is not the one the tombstone rows of "
            f"{table_folder(warehouse)} were made with (ids {sorted(ids)}): restore that key")
    return Erasures(key=key, user_keys=frozenset(table.column("user_key").to_pylist()))


def append(warehouse: Path | str, key: str, user_ids: Iterable[str],
           erased_at: dt.datetime) -> list[str]:
    """Add the users not yet in the tombstone; return the ids added.

    One new Parquet file per call, written under ``_staging/erasures/`` and renamed into the
    table folder: readers see all of its rows or none.
    """
    known = set(read_table(warehouse).column("user_key").to_pylist())
    new = sorted({u for u in user_ids if user_key(key, u) not in known})
    if not new:
        return []
    table = pa.table({"user_key": [user_key(key, u) for u in new],
                      "key_id": [key_id(key)] * len(new),
                      "erased_at": pa.array([erased_at] * len(new), pa.timestamp("us", tz="UTC"))},
                     schema=ERASURES_ARROW)
    staged = Path(warehouse) / STAGING / ERASURES / f"part-{uuid.uuid4().hex[:12]}.parquet"
    staged.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, staged, compression="zstd")
    with open(staged, "rb") as f:
        os.fsync(f.fileno())
    final = table_folder(warehouse) / (erased_at.strftime("part-%Y%m%dT%H%M%S%fZ-") + staged.name[5:])
    final.parent.mkdir(parents=True, exist_ok=True)
    os.rename(staged, final)
    return new
