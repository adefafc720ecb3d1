"""Recommendations for users the model cannot score: no history, or unknown to the model.

Two fallbacks, tagged in the ``source`` column:
- ``popular``: the items most users interacted with in the training window (available ones only);
- ``content``: for hybrid models that map user features to a user vector
  (``model.user_vectors_from_features(features) -> (b, f)``), a product with the item vectors.
"""
from __future__ import annotations

import numpy as np

from recsys.interactions import Interactions
from recsys.models.base import Recommender


def popular_items(interactions: Interactions, n: int, available: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Top-``n`` items by number of distinct users (ties: lower index first).

    Returns (items, scores), each of length ``n``; -1 / -inf pad when fewer items qualify.
    """
    seen = interactions.csr("ones")
    return popular_from_counts(np.asarray((seen > 0).sum(axis=0)).ravel(), n, available)


def popular_from_counts(counts: np.ndarray, n: int, available: np.ndarray | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`popular_items` from the distinct-user count of every item (the Spark engine counts
    them with Spark)."""
    counts = np.asarray(counts).astype(np.float32)
    ok = counts > 0
    if available is not None:
        ok &= np.asarray(available, bool)
    cand = np.flatnonzero(ok)
    order = cand[np.lexsort((cand, -counts[cand]))][:n]
    items = np.full(n, -1, np.int64)
    scores = np.full(n, -np.inf, np.float32)
    items[: len(order)] = order
    scores[: len(order)] = counts[order]
    return items, scores


def supports_content(model: Recommender) -> bool:
    """True when ``model`` can build a user vector from user features (a hybrid model)."""
    return model.factorized and callable(getattr(model, "user_vectors_from_features", None))


def content_topn(model: Recommender, user_features: np.ndarray, n: int,
                 items: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``n`` (items, scores) for feature-only users; ``items`` restricts the catalog."""
    from recsys.score.topn import FactorizedScorer

    vecs = np.asarray(model.user_vectors_from_features(user_features), np.float32)
    scorer = FactorizedScorer(vecs, model.item_vectors(), items=items)
    empty = np.empty(0, np.int64)
    return scorer.topn(np.arange(len(vecs)), n, empty, empty)
