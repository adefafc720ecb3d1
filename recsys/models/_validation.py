"""Validation ranking metric for early stopping, computed with the model's own ``recommend``:
NDCG@k (:mod:`recsys.metrics`, binary relevance) over the held-out items, train items excluded."""
from __future__ import annotations

from typing import Callable

import numpy as np

from recsys import metrics
from recsys.interactions import Interactions
from recsys.models.base import Recommender


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
    return metrics.ndcg_at_k(items, truth[users], k)


def validator(model: Recommender, held_out: Interactions | None, k: int = 10
              ) -> Callable[[], dict[str, float]] | None:
    """A ``validate`` callback for :func:`recsys.models.loop.fit_epochs`, or None without data."""
    if held_out is None or len(held_out) == 0:
        return None
    return lambda: {f"val_ndcg@{k}": ndcg_at_k(model, held_out, k)}
