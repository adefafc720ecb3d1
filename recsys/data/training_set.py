"""Load one published training-set partition into numpy, with pyarrow only (no Spark).

The partition ``<warehouse>/training_set/ds=D/`` is written by ``jobs/build_features.py``:
``interactions/`` (schema.TRAINING_ROWS), ``user_map/``, ``item_map/``, optional
``item_features/`` / ``user_features/`` and ``_dq_summary.json``.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from recsys import io
from recsys.interactions import Interactions, leave_last_k_out
from recsys.schema import TRAINING_SET

DQ_SUMMARY_FILE = "_dq_summary.json"


class TrainingSetNotFound(FileNotFoundError):
    """The training-set partition does not exist or is incomplete."""


@dataclasses.dataclass(frozen=True)
class TrainingSet:
    """A training set with its id maps; indices of ``interactions`` index ``user_ids``/``item_ids``."""

    interactions: Interactions
    user_ids: np.ndarray  # object (str), position = user_idx
    item_ids: np.ndarray  # object (str), position = item_idx
    item_available: np.ndarray | None  # bool per item_idx, None without a catalog
    dq_summary: dict | None
    path: Path


def _table(folder: Path) -> pa.Table:
    # Spark writes part files plus _SUCCESS/.crc files; the dataset API skips "_" and "." names.
    return pads.dataset(str(folder), format="parquet").to_table()


def _id_array(folder: Path, idx: str, key: str) -> np.ndarray:
    t = _table(folder)
    n = t.num_rows
    pos = t[idx].to_numpy().astype(np.int64)
    if n and (pos.min() != 0 or pos.max() != n - 1 or len(np.unique(pos)) != n):
        raise ValueError(f"{folder}: {idx} is not a dense 0..{n - 1} index")
    out = np.empty(n, dtype=object)
    out[pos] = np.asarray(t[key].to_pylist(), dtype=object)
    return out


def _features(folder: Path, idx: str, n: int, skip: tuple[str, ...] = ()) -> tuple[np.ndarray | None, pa.Table | None]:
    if not folder.is_dir():
        return None, None
    t = _table(folder)
    names = sorted(c for c in t.column_names if c not in (idx, *skip))
    matrix = np.zeros((n, len(names)), dtype=np.float32)
    pos = t[idx].to_numpy().astype(np.int64)
    for j, name in enumerate(names):
        matrix[pos, j] = pc.fill_null(t[name], 0).to_numpy().astype(np.float32)
    return matrix, t


def training_set_path(warehouse: Path | str, ds: str) -> Path:
    """The complete training-set partition of ``ds``; clear error if it is missing."""
    path = io.partition_path(warehouse, TRAINING_SET, ds)
    if not io.is_complete(path):
        state = "is incomplete" if path.exists() else "does not exist"
        raise TrainingSetNotFound(f"training set {path} {state}; run the build-features step "
                                  f"(jobs/build_features.py --ds {ds}) first")
    return path


def load_catalog(warehouse: Path | str, ds: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Only the item side of the training set of ``ds``: (item_ids, item_available), as in
    :class:`TrainingSet`. Its size is the catalog's, whatever the number of users."""
    path = training_set_path(warehouse, ds)
    item_ids = _id_array(path / "item_map", "item_idx", "item_id")
    if not (path / "item_features").is_dir():
        return item_ids, None
    t = pads.dataset(str(path / "item_features"), format="parquet").to_table(columns=["item_idx", "available"])
    available = np.ones(len(item_ids), dtype=bool)
    available[t["item_idx"].to_numpy().astype(np.int64)] = \
        pc.fill_null(t["available"], True).to_numpy(zero_copy_only=False)
    return item_ids, available


def write_training_set(warehouse: Path | str, ds: str, interactions: Interactions, user_ids: np.ndarray,
                       item_ids: np.ndarray, item_available: np.ndarray | None = None) -> Path:
    """Publish an in-memory training set as the partition of ``ds`` (the layout the build-features
    step writes; :func:`load_training_set` reads back the same arrays). For tests, benchmarks and
    the Spark scorer's in-memory entry point; the pipeline builds training sets with Spark.

    User features are written as columns ``f00000``, ``f00001``, ... (read back in that order).
    """
    n = len(interactions)
    rating = interactions.rating
    ts = interactions.ts if interactions.ts is not None else np.zeros(n, np.int64)
    tables = {
        "interactions": pa.table({
            "user_idx": pa.array(interactions.user_idx, pa.int32()),
            "item_idx": pa.array(interactions.item_idx, pa.int32()),
            "weight": pa.array(interactions.weight, pa.float32()),
            "rating": (pa.nulls(n, pa.float32()) if rating is None
                       else pa.array(rating, pa.float32(), mask=np.isnan(rating))),
            "ts": pa.array(np.asarray(ts, np.int64) * 1_000_000, pa.timestamp("us")),
        }),
        "user_map": pa.table({"user_idx": pa.array(np.arange(len(user_ids)), pa.int32()),
                              "user_id": pa.array(np.asarray(user_ids).astype(str))}),
        "item_map": pa.table({"item_idx": pa.array(np.arange(len(item_ids)), pa.int32()),
                              "item_id": pa.array(np.asarray(item_ids).astype(str))}),
    }
    if item_available is not None:
        tables["item_features"] = pa.table({"item_idx": pa.array(np.arange(len(item_ids)), pa.int32()),
                                            "available": pa.array(np.asarray(item_available, bool))})
    feats = interactions.user_features
    if feats is not None:
        cols = {"user_idx": pa.array(np.arange(len(user_ids)), pa.int32())}
        cols |= {f"f{j:05d}": pa.array(np.asarray(feats[:, j], np.float32)) for j in range(feats.shape[1])}
        tables["user_features"] = pa.table(cols)
    io.clear_staging(warehouse, TRAINING_SET, ds)
    staged = io.staging_path(warehouse, TRAINING_SET, ds)
    for name, table in tables.items():
        (staged / name).mkdir(parents=True)
        pq.write_table(table, staged / name / "part-00000.parquet")
    final = io.partition_path(warehouse, TRAINING_SET, ds)
    io.publish_dir(staged, final)
    return final


def load_training_set(warehouse: Path | str, ds: str) -> TrainingSet:
    """Load the training set of ``ds`` from ``warehouse``; clear error if it is missing."""
    path = training_set_path(warehouse, ds)
    user_ids = _id_array(path / "user_map", "user_idx", "user_id")
    item_ids = _id_array(path / "item_map", "item_idx", "item_id")
    # One canonical row order, whatever wrote the files (how many Spark tasks, local or cluster):
    # the holdout and validation splits break ties and draw by position, so the same rows in
    # another order gave another model (issue 11: a cluster-built day trained differently).
    rows = _table(path / "interactions").sort_by(
        [(c, "ascending") for c in ("user_idx", "ts", "item_idx", "weight", "rating")])
    rating = pc.fill_null(rows["rating"].cast(pa.float32()), float("nan")).to_numpy()
    # Microseconds first (unsafe cast: INT96/ns values truncate), then whole seconds.
    micros = pc.cast(rows["ts"], pa.timestamp("us"), safe=False).cast(pa.int64()).to_numpy()
    ts = np.floor_divide(micros, 1_000_000)
    user_f, _ = _features(path / "user_features", "user_idx", len(user_ids))
    item_f, item_t = _features(path / "item_features", "item_idx", len(item_ids), skip=("available",))
    available = None
    if item_t is not None:
        available = np.ones(len(item_ids), dtype=bool)
        avail = pc.fill_null(item_t["available"], True).to_numpy(zero_copy_only=False)
        available[item_t["item_idx"].to_numpy().astype(np.int64)] = avail
    interactions = Interactions(
        user_idx=rows["user_idx"].to_numpy().astype(np.int64),
        item_idx=rows["item_idx"].to_numpy().astype(np.int64),
        weight=rows["weight"].to_numpy().astype(np.float32),
        n_users=len(user_ids),
        n_items=len(item_ids),
        rating=np.asarray(rating, dtype=np.float32),
        ts=np.asarray(ts, dtype=np.int64),
        user_features=user_f,
        item_features=item_f,
    )
    dq_file = path / DQ_SUMMARY_FILE
    dq = json.loads(dq_file.read_text()) if dq_file.exists() else None
    return TrainingSet(interactions, user_ids, item_ids, available, dq, path)


def holdout_split(ts: TrainingSet) -> tuple[Interactions, Interactions]:
    """(train, holdout): each user's latest interaction is held out, when they have two or more."""
    return leave_last_k_out(ts.interactions, k=1)
