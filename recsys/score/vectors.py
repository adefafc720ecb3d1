"""A factorized model version's vectors as Parquet in the warehouse, for the Spark scorer.

Layout (one write-once folder per registered model version; names in :mod:`recsys.schema`)::

    <warehouse>/model_vectors/model=<registered name>/version=<v>/
        users/part-00000.parquet ...   user_id string, vector list<float32>  (USER_VECTORS_ARROW)
        items/part-00000.parquet       item_id string, vector list<float32>  (ITEM_VECTORS_ARROW)
        _vectors.json                  model, version, run_id, factors, users, items, source
        _SUCCESS

Why so: a version's vectors never change, so the version folder is the unit that is written
(staged under ``<warehouse>/_staging/model_vectors/`` and renamed into place once, users and
items together: a reader sees both tables or neither) and the unit that is deleted. A version
number is only unique within one registered model, hence ``model=<registered name>`` (which
contains the family: ``recsys_mf_bpr``) above it. Rows are keyed by external id, not by the
model's dense index: the Spark engine joins them to a day's training set by ``user_id`` and the
indices of the day the model was trained mean nothing then. ``items`` holds the model's items in
its index order (small: the driver reads it and broadcasts it). ``_vectors.json`` records the
MLflow run: vectors whose run differs from the loaded version's (a registry that was reset and
numbers versions from 1 again) are stale and are rewritten.

Writers: the train step (:mod:`recsys.steps.train`) after registering a factorized version;
:func:`ensure_vectors` for versions trained before that (once, from the loaded model, on the
driver). Only pyarrow and numpy here: no torch, no Spark.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from recsys import io
from recsys.schema import (
    ITEM_VECTORS_ARROW,
    ITEMS,
    MODEL_VECTORS,
    STAGING,
    USER_VECTORS_ARROW,
    USERS,
)

log = logging.getLogger(__name__)

META_FILE = "_vectors.json"
FILE_ROWS = 1_000_000  # users per Parquet file
ROW_GROUP_ROWS = 65_536  # Spark splits files at row groups: 16 MiB of 64-factor vectors each


class VectorsNotFound(FileNotFoundError):
    """No complete vectors folder for a model version."""


def vectors_path(warehouse: Path | str, model_name: str, version: str) -> Path:
    """``<warehouse>/model_vectors/model=<model_name>/version=<version>``."""
    return Path(warehouse) / MODEL_VECTORS / f"model={model_name}" / f"version={version}"


def read_info(path: Path | str) -> dict[str, Any] | None:
    """The ``_vectors.json`` of a complete vectors folder, None when there is none."""
    path = Path(path)
    if not io.is_complete(path) or not (path / META_FILE).exists():
        return None
    return json.loads((path / META_FILE).read_text())


def _vector_array(vectors: np.ndarray) -> pa.Array:
    b, f = vectors.shape
    values = pa.array(np.ascontiguousarray(vectors, np.float32).ravel(), pa.float32())
    offsets = pa.array(np.arange(0, (b + 1) * f, f, dtype=np.int32)[: b + 1] if f else np.zeros(b + 1, np.int32))
    return pa.ListArray.from_arrays(offsets, values, type=USER_VECTORS_ARROW.field("vector").type)


def _check(ids: np.ndarray, vectors: np.ndarray, factors: int | None, what: str) -> int:
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or len(ids) != len(vectors):
        raise ValueError(f"{what}: {len(ids)} ids but vectors of shape {vectors.shape}")
    if factors is not None and vectors.shape[1] != factors:
        raise ValueError(f"{what}: {vectors.shape[1]} factors, expected {factors}")
    return vectors.shape[1]


class _Files:
    """Write (id, vector) chunks into ``folder`` as files of at most FILE_ROWS rows."""

    def __init__(self, folder: Path, schema: pa.Schema) -> None:
        self.folder, self.schema = folder, schema
        self.folder.mkdir(parents=True)
        self.writer: pq.ParquetWriter | None = None
        self.files = self.rows = self._in_file = 0

    def put(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        s = 0
        while s < len(ids):
            if self.writer is None or self._in_file >= FILE_ROWS:
                self._next()
            e = min(s + ROW_GROUP_ROWS, len(ids), s + FILE_ROWS - self._in_file)
            table = pa.table([pa.array(np.asarray(ids[s:e]).astype(str), pa.string()),
                              _vector_array(np.asarray(vectors[s:e], np.float32))], schema=self.schema)
            self.writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
            self._in_file += e - s
            self.rows += e - s
            s = e

    def _next(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer = pq.ParquetWriter(self.folder / f"part-{self.files:05d}.parquet", self.schema,
                                       compression="zstd", use_dictionary=False,
                                       write_statistics=[self.schema.names[0]])
        self.files += 1
        self._in_file = 0

    def close(self) -> None:
        if self.writer is None:  # no rows: still one (empty) file, so readers find the schema
            self._next()
        self.writer.close()


def write_vectors(warehouse: Path | str, model_name: str, version: str, run_id: str,
                  users: Iterable[tuple[np.ndarray, np.ndarray]], item_ids: np.ndarray,
                  item_vectors: np.ndarray, source: str = "train") -> Path:
    """Write a version's vectors atomically; return the folder.

    ``users`` yields (user_ids, vectors) chunks (so a caller never needs all of them in memory);
    items are the model's, in its index order. A complete folder already there wins (write-once:
    see :func:`recsys.io.publish_new_dir`). Leftovers of killed writers of this version are removed
    first.
    """
    final = vectors_path(warehouse, model_name, version)
    base = Path(warehouse) / STAGING / MODEL_VECTORS
    prefix = f"model={model_name}.version={version}."
    if base.is_dir():
        for old in base.glob(prefix + "*"):
            shutil.rmtree(old, ignore_errors=True)
    staged = base / f"{prefix}{uuid.uuid4().hex[:12]}"
    try:
        factors = _check(item_ids, item_vectors, None, "items")
        items = _Files(staged / ITEMS, ITEM_VECTORS_ARROW)
        items.put(np.asarray(item_ids), np.asarray(item_vectors))
        items.close()
        out = _Files(staged / USERS, USER_VECTORS_ARROW)
        for ids, vecs in users:
            _check(ids, vecs, factors, "users")
            out.put(np.asarray(ids), vecs)
        out.close()
        meta = {"model": model_name, "version": str(version), "run_id": run_id, "factors": factors,
                "users": out.rows, "items": items.rows, "source": source,
                "written_at": dt.datetime.now(dt.timezone.utc).isoformat()}
        (staged / META_FILE).write_text(json.dumps(meta, indent=2))
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    if not io.publish_new_dir(staged, final):
        log.info("vectors of %s v%s were already written at %s", model_name, version, final)
    else:
        log.info("wrote %d user and %d item vectors of %s v%s to %s",
                 meta["users"], meta["items"], model_name, version, final)
    return final


def _chunks(ids: np.ndarray, vectors: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for s in range(0, len(ids), FILE_ROWS):
        yield ids[s:s + FILE_ROWS], vectors[s:s + FILE_ROWS]


def write_bundle_vectors(warehouse: Path | str, model_name: str, version: str, run_id: str,
                         bundle: Any, source: str = "train") -> Path:
    """:func:`write_vectors` for a loaded factorized bundle (``recsys.models.bundle.ModelBundle``):
    exactly the vectors its scorer multiplies (``model.user_vectors()``/``item_vectors()``)."""
    model = bundle.model
    if not model.factorized:
        raise ValueError(f"{model.name} is not factorized: it has no vectors to write")
    users = np.asarray(model.user_vectors(), np.float32)
    items = np.asarray(model.item_vectors(), np.float32)
    return write_vectors(warehouse, model_name, version, run_id,
                         _chunks(np.asarray(bundle.user_ids), users), np.asarray(bundle.item_ids),
                         items, source=source)


def ensure_vectors(warehouse: Path | str, model_name: str, version: str, run_id: str,
                   bundle: Any) -> Path:
    """The vectors folder of a loaded version, written from ``bundle`` when it is missing.

    Versions trained before the train step wrote vectors have none: they are written here once,
    from the model the caller already holds (the only time user vectors pass through the driver),
    with a warning. Vectors of another MLflow run under the same name and version are stale
    (the registry was reset) and are replaced.
    """
    if not bundle.model.factorized:
        raise ValueError(f"score.engine=spark needs a factorized model; {bundle.model.name} is not "
                         "(use score.engine=local, which re-ranks candidates)")
    path = vectors_path(warehouse, model_name, version)
    info = read_info(path)
    if info is not None and info.get("run_id") == run_id:
        return path
    if info is not None or path.exists():
        log.warning("vectors at %s belong to run %s, not to %s v%s's run %s (or are incomplete): "
                    "replacing them", path, (info or {}).get("run_id"), model_name, version, run_id)
        aside = Path(warehouse) / STAGING / MODEL_VECTORS / f"stale-{uuid.uuid4().hex[:12]}"
        aside.parent.mkdir(parents=True, exist_ok=True)
        path.rename(aside)
        shutil.rmtree(aside, ignore_errors=True)
    log.warning("no vectors for %s v%s in the warehouse (trained before the train step wrote "
                "them): writing them once from the loaded model, on the driver", model_name, version)
    return write_bundle_vectors(warehouse, model_name, version, run_id, bundle, source="migration")


def read_item_vectors(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """(item_ids, vectors (m, f) float32) of a vectors folder, in the model's item order."""
    path = Path(path)
    info = read_info(path)
    if info is None:
        raise VectorsNotFound(f"no complete model vectors at {path}")
    files = sorted((path / ITEMS).glob("*.parquet"))
    t = pads.dataset([str(f) for f in files], format="parquet").to_table()
    ids = np.asarray(t["item_id"].to_pylist(), dtype=object)
    flat = pc.list_flatten(t["vector"]).to_numpy()
    return ids, np.ascontiguousarray(flat.reshape(len(ids), int(info["factors"])), np.float32)


def drop_old_versions(warehouse: Path | str, model_name: str, keep: int,
                      protect: Iterable[str] = ()) -> list[str]:
    """Delete the vectors of all but the newest ``keep`` versions of ``model_name``, never those
    of a version in ``protect`` (the champion, the version just written); return the dropped
    versions. A folder is renamed out of the table first, then deleted. Dropping vectors never
    breaks scoring: :func:`ensure_vectors` writes a loaded version's vectors again."""
    base = Path(warehouse) / MODEL_VECTORS / f"model={model_name}"
    if not base.is_dir():
        return []
    found = {}
    for child in base.iterdir():
        version = child.name.removeprefix("version=")
        if child.is_dir() and child.name.startswith("version=") and version.isdigit():
            found[version] = child
    ordered = sorted(found, key=int)
    keep_set = set(ordered[-keep:] if keep > 0 else ordered) | {str(p) for p in protect if p is not None}
    dropped = [v for v in ordered if v not in keep_set]
    for version in dropped:
        gone = Path(warehouse) / STAGING / MODEL_VECTORS / f"drop-{uuid.uuid4().hex[:12]}"
        gone.parent.mkdir(parents=True, exist_ok=True)
        found[version].rename(gone)
        shutil.rmtree(gone, ignore_errors=True)
    return dropped
