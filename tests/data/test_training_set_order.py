"""Issue 11: the same training-set rows written in another order (another number of Spark tasks,
local mode or a cluster) trained another model: the holdout and validation splits break ties and
draw by row position. The loader now gives one canonical order."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from recsys.data.training_set import (
    holdout_split,
    load_training_set,
    write_training_set,
)
from recsys.interactions import Interactions, validation_split
from recsys.io import partition_path
from recsys.schema import TRAINING_SET

DS = "2026-01-05"


def _day(warehouse) -> None:
    rng = np.random.default_rng(1)
    n = 400
    u = rng.integers(0, 30, n)
    i = rng.integers(0, 20, n)
    ts = rng.integers(0, 5, n)  # few distinct times: many ties within a user
    data = Interactions(u, i, rng.integers(1, 4, n).astype(np.float32), 30, 20,
                        rating=np.where(rng.random(n) < 0.5, np.nan, 3.0).astype(np.float32), ts=ts)
    write_training_set(warehouse, DS, data, np.array([f"u{k}" for k in range(30)]),
                       np.array([f"i{k}" for k in range(20)]))


def _rewrite_shuffled(warehouse, parts: int, seed: int) -> None:
    """The same rows in ``parts`` files, in a shuffled order (as other Spark tasks write them)."""
    folder = partition_path(warehouse, TRAINING_SET, DS) / "interactions"
    table = pq.read_table(folder)
    order = np.random.default_rng(seed).permutation(table.num_rows)
    for f in folder.glob("*.parquet"):
        f.unlink()
    for k, chunk in enumerate(np.array_split(order, parts)):
        pq.write_table(table.take(chunk), folder / f"part-{k:05d}.parquet")


def _splits(warehouse):
    ts = load_training_set(warehouse, DS)
    train, holdout = holdout_split(ts)
    fit, validation = validation_split(train, fraction=0.2, seed=42)
    return ts.interactions, holdout, fit, validation


def test_training_set_row_order_does_not_depend_on_how_it_was_written(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _day(a)
    _day(b)
    _rewrite_shuffled(b, parts=4, seed=3)
    for left, right in zip(_splits(a), _splits(b)):
        for field in ("user_idx", "item_idx", "weight", "rating", "ts"):
            np.testing.assert_array_equal(getattr(left, field), getattr(right, field), err_msg=field)
