"""Side-feature matrices for the hybrid models: multi-hot categories, numbers, hashed text.

Each returns a dense float32 block with one row per entity; stack blocks with ``np.hstack`` into
``Interactions.user_features`` / ``item_features``. Everything is deterministic (no salted
``hash()``), so the same text maps to the same columns in every process.
"""
from __future__ import annotations

import re
import zlib
from typing import Iterable, Sequence

import numpy as np

_TOKEN = re.compile(r"[a-z0-9]+")


def multi_hot(values: Sequence[Iterable[str]], vocabulary: Sequence[str] | None = None
              ) -> tuple[np.ndarray, list[str]]:
    """One column per category; returns the block and its vocabulary (sorted when not given)."""
    vocab = list(vocabulary) if vocabulary is not None else sorted({v for row in values for v in row})
    col = {v: j for j, v in enumerate(vocab)}
    out = np.zeros((len(values), len(vocab)), np.float32)
    for r, row in enumerate(values):  # catalogs are small; this runs once per fit
        for v in row:
            if v in col:
                out[r, col[v]] = 1.0
    return out, vocab


def numeric(values: Sequence[float]) -> np.ndarray:
    """Standardized numbers in one column, with a second column flagging missing values."""
    x = np.asarray(values, dtype=np.float64)
    missing = ~np.isfinite(x)
    mean = x[~missing].mean() if (~missing).any() else 0.0
    std = x[~missing].std() if (~missing).sum() > 1 else 1.0
    z = np.where(missing, 0.0, (x - mean) / (std or 1.0))
    return np.stack([z, missing.astype(np.float64)], axis=1).astype(np.float32)


def hashed_text(texts: Sequence[str | None], dim: int = 256) -> np.ndarray:
    """Bag of lower-cased word tokens hashed (crc32) into ``dim`` columns, rows L2-normalized."""
    out = np.zeros((len(texts), dim), np.float32)
    for r, text in enumerate(texts):
        for tok in _TOKEN.findall((text or "").lower()):
            out[r, zlib.crc32(tok.encode()) % dim] += 1.0
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norm, 1e-12)
