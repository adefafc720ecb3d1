"""Dense side features for the benchmark, from whatever catalog columns the importer gives.

Generic on purpose (no dataset-specific choices): list columns become multi-hot, numeric
columns quantile-bucket one-hots, other columns one-hots of their most frequent values.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

MAX_LEVELS = 50  # one-hot levels per categorical column; rarer values share no column
NUMERIC_BINS = 5
SKIP = {"user_id", "item_id", "title", "zip", "url", "tags"}


def _column_block(values: pd.Series) -> np.ndarray | None:
    sample = values.dropna()
    if sample.empty:
        return None
    if isinstance(sample.iloc[0], (list, tuple, np.ndarray)):
        exploded = values.map(lambda v: list(v) if isinstance(v, (list, tuple, np.ndarray)) else [])
        levels = pd.Series([x for row in exploded for x in row]).value_counts().index[:MAX_LEVELS]
        index = {v: j for j, v in enumerate(levels)}
        out = np.zeros((len(values), len(index)), np.float32)
        for r, row in enumerate(exploded):
            for x in row:
                if x in index:
                    out[r, index[x]] = 1.0
        return out
    if pd.api.types.is_numeric_dtype(values):
        numeric = pd.to_numeric(values, errors="coerce").astype("float64")
        bins = pd.qcut(numeric, NUMERIC_BINS, labels=False, duplicates="drop")
        return pd.get_dummies(bins.astype("Int64").astype(str)).drop(columns="<NA>", errors="ignore").to_numpy(np.float32)
    text = values.astype(str)
    top = text.value_counts().index[:MAX_LEVELS]
    return pd.get_dummies(text.where(text.isin(top))).to_numpy(np.float32)


def side_features(frame: pd.DataFrame | None, key: str, ids: np.ndarray) -> np.ndarray | None:
    """Dense float32 features aligned with ``ids`` (rows of unknown ids are all zero)."""
    if frame is None or key not in frame.columns:
        return None
    frame = frame.drop_duplicates(key)
    frame.index = pd.Index(frame[key].astype(str))
    blocks = [b for c in frame.columns if c not in SKIP and c != key
              for b in [_column_block(frame[c])] if b is not None and b.shape[1]]
    if not blocks:
        return None
    dense = np.hstack(blocks)
    pos = frame.index.get_indexer(pd.Index(ids.astype(str)))
    out = np.zeros((len(ids), dense.shape[1]), np.float32)
    out[pos >= 0] = dense[pos[pos >= 0]]
    return out
