"""Score given (user, item) pairs with one model: debugging, re-ranking, offline evaluation."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def read_pairs(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file with ``user_id,item_id`` (ids) or ``user_idx,item_idx`` columns."""
    path = Path(path)
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str)
    if {"user_id", "item_id"} <= set(df.columns) or {"user_idx", "item_idx"} <= set(df.columns):
        return df
    raise ValueError(f"{path}: expected columns user_id,item_id (or user_idx,item_idx); "
                     f"got {', '.join(df.columns)}")


def score_pairs(bundle, pairs: pd.DataFrame) -> pd.DataFrame:
    """``pairs`` plus a float32 ``score`` column (NaN where the model does not know the id).

    Ids are translated with the bundle's own maps, so any model version can score them.
    """
    if "user_id" in pairs and "item_id" in pairs:
        u = bundle.user_index(pairs["user_id"].astype(str).to_numpy())
        i = bundle.item_index(pairs["item_id"].astype(str).to_numpy())
    else:
        u = pairs["user_idx"].to_numpy(np.int64)
        i = pairs["item_idx"].to_numpy(np.int64)
        u = np.where((u >= 0) & (u < bundle.model.n_users), u, -1)
        i = np.where((i >= 0) & (i < bundle.model.n_items), i, -1)
    known = (u >= 0) & (i >= 0)
    scores = np.full(len(pairs), np.nan, np.float32)
    if known.any():
        scores[known] = bundle.model.score(u[known], i[known])
    return pairs.assign(score=scores)


def write_scores(df: pd.DataFrame, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)
