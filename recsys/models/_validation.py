"""Validation ranking metric for early stopping, computed with the model's own ``recommend``.

Kept inside the models package (rather than recsys.evaluate) so training depends on nothing but
numpy: NDCG@k with binary relevance over the held-out items, train items excluded.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from recsys.models.base import Interactions, Recommender


def ndcg_at_k(
    model: Recommender, held_out: Interactions, k: int = 10, max_users: int = 2000, seed: int = 0
) -> float:
    """Mean NDCG@k over (at most ``max_users``, sampled with ``seed``) users with held-out rows."""
    truth = held_out.csr("ones")
    users = np.flatnonzero(np.diff(truth.indptr))
    if len(users) == 0:
        return 0.0
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    items, _ = model.recommend(users, k, exclude_seen=True)
    rows = truth[users]
    hit = np.zeros(items.shape, dtype=np.float64)
    for r in range(k):  # k columns, each a vectorized lookup into the sparse truth
        col = np.maximum(items[:, r], 0)
        hit[:, r] = np.asarray(rows[np.arange(len(users)), col]).ravel() * (items[:, r] >= 0)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    n_true = np.minimum(np.diff(rows.indptr), k)
    ideal = np.cumsum(discount)[n_true - 1]
    return float(((hit * discount).sum(1) / ideal).mean())


def validator(model: Recommender, held_out: Interactions | None, k: int = 10
              ) -> Callable[[], dict[str, float]] | None:
    """A ``validate`` callback for :func:`recsys.train.loop.fit_epochs`, or None without data."""
    if held_out is None or len(held_out) == 0:
        return None
    return lambda: {f"val_ndcg@{k}": ndcg_at_k(model, held_out, k)}
