"""Evaluation protocols: full ranking of unseen items, and sampled negatives (NCF paper).

:func:`evaluate_model` is the one entry point the nightly gate and the quality benchmark share.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys import metrics as M
from recsys.interactions import Interactions
from recsys.models.base import Recommender


def predicts_ratings(model: Recommender) -> bool:
    """Whether the model's ``score`` is a rating prediction (``Recommender.predicts_ratings``)."""
    return model.predicts_ratings


def recommend_users(
    model: Recommender, users: np.ndarray, k: int, batch_size: int = 2048
) -> np.ndarray:
    """Top-``k`` unseen items for ``users`` in blocks, so the dense score block stays bounded."""
    blocks = [
        model.recommend(users[start:start + batch_size], k, exclude_seen=True)[0]
        for start in range(0, len(users), batch_size)
    ]
    return np.vstack(blocks) if blocks else np.empty((0, k), dtype=np.int64)


def evaluate_model(
    model: Recommender,
    train: Interactions,
    test: Interactions,
    k: int = 10,
    batch_size: int = 2048,
) -> dict[str, float]:
    """Full-ranking metrics of a fitted ``model`` on ``test`` (seen items excluded).

    Evaluates every user with at least one test row. Returns the ranking metrics keyed
    ``"<name>@<k>"`` (precision, recall, ndcg, map, hit_rate, mrr), ``coverage@k``,
    ``novelty@k`` and ``arp@k`` (popularity bias, popularity from ``train``), ``n_users``, and
    ``rmse`` / ``mae`` on the test ratings when the model predicts ratings.
    """
    users = np.unique(test.user_idx)
    recommended = recommend_users(model, users, k, batch_size)
    out = evaluate_recommendations(recommended, users, train, test, k)
    if predicts_ratings(model) and test.rating is not None:
        out.update(rating_metrics(model, test))
    return out


def evaluate_recommendations(
    recommended: np.ndarray, users: np.ndarray, train: Interactions, test: Interactions, k: int
) -> dict[str, float]:
    """The metrics of :func:`evaluate_model` for precomputed top-k rows of ``users``."""
    relevant = test.csr("ones")[users]
    out = M.ranking_metrics(recommended, relevant, k)
    popularity = M.item_popularity(train.csr("ones"))
    out[f"coverage@{k}"] = M.catalog_coverage(recommended, test.n_items, k)
    out[f"novelty@{k}"] = M.novelty(recommended, popularity, k)
    out[f"arp@{k}"] = M.average_popularity(recommended, popularity, k)
    out["n_users"] = float(len(users))
    return out


def rating_metrics(model: Recommender, test: Interactions) -> dict[str, float]:
    """RMSE and MAE of ``model.score`` against the test rows that carry a rating."""
    if test.rating is None:
        raise ValueError("the test set has no ratings; cannot compute RMSE/MAE")
    rated = ~np.isnan(test.rating)
    pred = model.score(test.user_idx[rated], test.item_idx[rated])
    truth = test.rating[rated]
    return {"rmse": M.rmse(truth, pred), "mae": M.mae(truth, pred)}


def _sample_negatives(
    interacted: sp.csr_matrix, users: np.ndarray, n_neg: int, rng: np.random.Generator
) -> np.ndarray:
    """``(len(users), n_neg)`` items each user never interacted with (uniform, with replacement).

    Rejection sampling, vectorized: draw for every slot, redraw only the slots that hit an
    interacted item until none does.
    """
    n_items = interacted.shape[1]
    seen = interacted[users]
    seen.sort_indices()
    rows = np.repeat(np.arange(len(users), dtype=np.int64), np.diff(seen.indptr))
    keys = rows * n_items + seen.indices
    if (np.diff(seen.indptr) >= n_items).any():
        raise ValueError("a user has interacted with every item; no negatives to sample")
    out = rng.integers(0, n_items, size=(len(users), n_neg))
    bad = np.ones(out.shape, dtype=bool)
    row_key = np.arange(len(users), dtype=np.int64)[:, None] * n_items
    while bad.any():
        out[bad] = rng.integers(0, n_items, size=int(bad.sum()))
        query = row_key + out
        pos = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
        bad = (keys[pos] == query) if len(keys) else np.zeros(out.shape, dtype=bool)
    return out


def sampled_protocol(
    model: Recommender,
    train: Interactions,
    test: Interactions,
    k: int = 10,
    n_neg: int = 99,
    seed: int = 42,
) -> dict[str, float]:
    """HR@k and NDCG@k with sampled negatives (He et al. 2017, NCF): leave-one-out style.

    For every test row (one held-out positive per user, e.g. from :func:`leave_last_k_out`),
    rank the positive among ``n_neg`` items that user never interacted with (train or test).
    The positive's rank is 1 + the number of negatives scored strictly higher. Only for
    comparing with numbers published this way; the full ranking is the honest protocol.
    """
    rng = np.random.default_rng(seed)
    interacted = (train.csr("ones") + test.csr("ones")).tocsr()
    negatives = _sample_negatives(interacted, test.user_idx, n_neg, rng)
    items = np.hstack([test.item_idx[:, None], negatives])
    users = np.repeat(test.user_idx, n_neg + 1)
    scores = model.score(users, items.ravel()).reshape(items.shape)
    rank = (scores[:, 1:] > scores[:, :1]).sum(axis=1)  # 0-based rank of the positive
    hit = rank < k
    return {
        f"hr@{k}": float(hit.mean()),
        f"ndcg@{k}": float(np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0).mean()),
        "n_users": float(len(test)),
    }
