"""Ranking, beyond-accuracy and rating metrics as vectorized free functions.

One shape for every ranking metric: ``metric(recommended, relevant, k) -> float`` where

* ``recommended`` is an int array ``(n_users, >= k)`` of item indices, best first; ``-1`` pads a
  row that has fewer items (it never counts as a hit);
* ``relevant`` is a ``scipy.sparse`` matrix ``(n_users, n_items)`` whose non-zeros are the user's
  relevant (held-out) items, row ``r`` belonging to the same user as ``recommended[r]``.

Averages run over the rows with at least one relevant item, as the Recommenders project does
(users absent from the test set are not evaluated). Definitions (binary relevance):

* precision@k = hits in the top k / k
* recall@k = hits in the top k / #relevant
* ndcg@k = sum(1 / log2(rank + 1) over hit ranks) / sum(1 / log2(r + 1), r = 1..min(k, #relevant))
* map@k = sum(precision@rank over hit ranks within k) / #relevant  (Recommenders' ``map``)
* hit_rate@k = 1 if any hit in the top k
* mrr@k = 1 / rank of the first hit within k (0 without one)
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def _as_relevant(relevant: sp.spmatrix) -> sp.csr_matrix:
    """A deduplicated copy with sorted indices and no explicit zeros (the input is untouched)."""
    rel = sp.csr_matrix(relevant, copy=True)
    rel.sum_duplicates()  # also sorts the indices, which the lookup in hits_matrix needs
    rel.eliminate_zeros()
    return rel


def hits_matrix(recommended: np.ndarray, relevant: sp.spmatrix, k: int) -> np.ndarray:
    """Boolean ``(n_users, k)``: whether ``recommended[u, r]`` is a relevant item of row ``u``.

    Vectorized as a sorted-key lookup: every (row, item) pair becomes ``row * n_items + item`` and
    is looked up with one ``searchsorted`` in the relevant matrix's keys (row-major, so sorted).
    """
    recommended = np.asarray(recommended)
    if recommended.ndim != 2 or recommended.shape[1] < k:
        raise ValueError(f"recommended must be (n_users, >= {k}); got {recommended.shape}")
    rel = _as_relevant(relevant)
    if rel.shape[0] != recommended.shape[0]:
        raise ValueError(
            f"recommended has {recommended.shape[0]} rows but relevant has {rel.shape[0]}"
        )
    n_items = np.int64(rel.shape[1])
    rows = np.repeat(np.arange(rel.shape[0], dtype=np.int64), np.diff(rel.indptr))
    keys = rows * n_items + rel.indices.astype(np.int64)
    top = recommended[:, :k].astype(np.int64)
    valid = (top >= 0) & (top < n_items)
    query = np.arange(len(top), dtype=np.int64)[:, None] * n_items + np.where(valid, top, 0)
    if len(keys) == 0:
        return np.zeros(top.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return valid & (keys[pos] == query)


def _prepare(recommended, relevant, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Hits of the evaluated rows (those with >= 1 relevant item) and their #relevant."""
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    relevant = _as_relevant(relevant)
    hits = hits_matrix(recommended, relevant, k)
    n_rel = np.diff(relevant.indptr)
    keep = n_rel > 0
    return hits[keep], n_rel[keep].astype(np.float64)


def _mean(per_user: np.ndarray) -> float:
    return float(per_user.mean()) if len(per_user) else float("nan")


def _per_user(hits: np.ndarray, n_rel: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Every ranking metric per evaluated user, from the hits matrix."""
    ranks = np.arange(1, k + 1, dtype=np.float64)
    discount = 1.0 / np.log2(ranks + 1.0)
    n_hits = hits.sum(axis=1)
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[np.minimum(n_rel, k).astype(np.int64)]
    precision_at_rank = np.cumsum(hits, axis=1) / ranks
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, np.inf)
    return {
        "precision": n_hits / k,
        "recall": n_hits / n_rel,
        "ndcg": (hits * discount).sum(axis=1) / ideal,
        "map": (precision_at_rank * hits).sum(axis=1) / n_rel,
        "hit_rate": (n_hits > 0).astype(np.float64),
        "mrr": 1.0 / first,
    }


def ranking_metrics(recommended: np.ndarray, relevant: sp.spmatrix, k: int) -> dict[str, float]:
    """All ranking metrics at once, keyed ``"<name>@<k>"`` (one hits lookup for all)."""
    hits, n_rel = _prepare(recommended, relevant, k)
    return {f"{name}@{k}": _mean(v) for name, v in _per_user(hits, n_rel, k).items()}


def _one(name: str):
    def metric(recommended: np.ndarray, relevant: sp.spmatrix, k: int) -> float:
        hits, n_rel = _prepare(recommended, relevant, k)
        return _mean(_per_user(hits, n_rel, k)[name])

    metric.__name__ = f"{name}_at_k"
    metric.__doc__ = f"Mean {name}@k over users with at least one relevant item."
    return metric


precision_at_k = _one("precision")
recall_at_k = _one("recall")
ndcg_at_k = _one("ndcg")
map_at_k = _one("map")
hit_rate_at_k = _one("hit_rate")
mrr_at_k = _one("mrr")


# -- beyond accuracy ---------------------------------------------------------------------------
def _top_items(recommended: np.ndarray, k: int) -> np.ndarray:
    top = np.asarray(recommended)[:, :k].ravel()
    return top[top >= 0]


def catalog_coverage(recommended: np.ndarray, n_items: int, k: int) -> float:
    """Share of the catalog's ``n_items`` that appears in at least one top-k list."""
    return len(np.unique(_top_items(recommended, k))) / n_items


def item_popularity(train: sp.spmatrix) -> np.ndarray:
    """Share of users who interacted with each item in ``train`` (users x items), float64."""
    m = sp.csr_matrix(train)
    counts = np.bincount(m.indices, minlength=m.shape[1]).astype(np.float64)
    return counts / max(m.shape[0], 1)


def average_popularity(recommended: np.ndarray, popularity: np.ndarray, k: int) -> float:
    """Popularity bias (ARP): mean popularity of the recommended items."""
    items = _top_items(recommended, k)
    return float(popularity[items].mean()) if len(items) else float("nan")


def novelty(recommended: np.ndarray, popularity: np.ndarray, k: int) -> float:
    """Mean self-information ``-log2(popularity)`` of the recommended items (higher = more novel).

    Items nobody interacted with get the popularity of a single interaction so the value is finite.
    """
    items = _top_items(recommended, k)
    if not len(items):
        return float("nan")
    floor = popularity[popularity > 0].min() if (popularity > 0).any() else 1.0
    return float(-np.log2(np.maximum(popularity[items], floor)).mean())


# -- rating prediction -------------------------------------------------------------------------
def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error."""
    diff = np.asarray(y_true, np.float64) - np.asarray(y_pred, np.float64)
    return float(np.sqrt(np.mean(diff**2)))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error."""
    diff = np.asarray(y_true, np.float64) - np.asarray(y_pred, np.float64)
    return float(np.mean(np.abs(diff)))
