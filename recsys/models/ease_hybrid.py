"""EASE with side information (after Jeunen et al. 2020, "collective" EASE): features as rows/columns.

Item features enter as pseudo-users (one row per feature holding the items that have it, scaled
by ``item_feature_weight``); user features as pseudo-items (one column per feature, scaled by
``user_feature_weight``). The closed form is EASE's on the augmented matrix; only the item columns
of B are kept for scoring, so a user with features but no history still gets scores.

``activity_power`` scales each user's row by ``n_u ** -activity_power`` (rescaled to mean 1) in
the Gram matrix only, so heavy raters do not dominate the item-item weights; scoring still reads
the user's plain 0/1 row. 0.25 was picked on a validation split carved from the training split.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.interactions import Interactions
from recsys.models.base import FitOptions, Recommender
from recsys.models.baselines import ease_weights


def activity_scale(seen: sp.csr_matrix, power: float) -> np.ndarray:
    """Per-row weights ``n ** -power`` rescaled to mean 1 (rows with no entries count as 1)."""
    n = np.maximum(np.diff(seen.indptr), 1).astype(np.float64)
    w = n ** -power
    return (w / w.mean()).astype(np.float32)


def _block(m: np.ndarray | None, rows: int) -> sp.csr_matrix:
    return sp.csr_matrix((rows, 0), dtype=np.float32) if m is None else sp.csr_matrix(m, dtype=np.float32)


class EASEHybrid(Recommender):
    name = "ease_hybrid"

    def fit(self, train: Interactions, options: FitOptions) -> "EASEHybrid":
        self._remember(train)
        cfg = self.config
        users = _block(train.user_features, train.n_users) * cfg.user_feature_weight
        items = _block(train.item_features, train.n_items) * cfg.item_feature_weight
        rows = sp.diags(activity_scale(self._seen, cfg.activity_power)) @ self._seen.astype(np.float32)
        top = sp.hstack([rows, users])
        bottom = sp.hstack([items.T, sp.csr_matrix((items.shape[1], users.shape[1]))])
        x = sp.vstack([top, bottom]).tocsr()
        b = ease_weights(x, cfg.l2, options.device)
        self.weights = b[:, : train.n_items].float().cpu().numpy()
        self.user_block = users.tocsr()
        return self

    def score_users(self, user_idx: np.ndarray) -> np.ndarray:
        self._check_fitted()
        u = np.asarray(user_idx)
        rows = sp.hstack([self._seen[u].astype(np.float32), self.user_block[u]]).tocsr()
        return np.asarray(rows @ self.weights, dtype=np.float32)

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        self._check_fitted()
        users, local = np.unique(np.asarray(user_idx, np.int64), return_inverse=True)
        rows = sp.hstack([self._seen[users].astype(np.float32), self.user_block[users]]).tocsr()
        return self._score_pairs_sparse(rows, self.weights, local, item_idx)

    def item_item_matrix(self) -> np.ndarray:
        """The item rows of ``B`` (items x items): the history part of a user's scores,
        ``x_u @ B`` (the user-feature part is left out; recsys.score.reasons)."""
        self._check_fitted()
        return self.weights[: self.n_items]

    def state(self) -> dict[str, Any]:
        return {"weights": self.weights, "user_block": self.user_block}

    def load_state(self, state: dict[str, Any]) -> None:
        self.weights, self.user_block = state["weights"], state["user_block"]
