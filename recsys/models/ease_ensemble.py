"""Item-side and user-side EASE, blended by weights learned on a validation split carved from train.

Two closed forms see different structure: ``ease_hybrid`` (item x item weights, with side
features) and a user-side EASE (user x user weights on the transposed matrix, item columns
down-weighted by ``popularity ** -activity_power``, the mirror of ease_hybrid's user scaling).
Per user, the ``candidates`` best items of the item side are re-scored by a linear blend of

    z(item side), z(user side), log(1 + rank on the item side), standardized log popularity

(z: standardized over the user's unseen items). The blend weights are fitted by a listwise
softmax loss (each user's held-out items against the rest of that user's candidates, every user
weighted equally, as recall and MAP weight them) on a ``validation_fraction`` per-user split
carved out of the training data with ``seed``; then both sides are refitted on all of it. Items
outside the candidates keep the item side's order, below every candidate. With fewer than
``min_validation_users`` validation users the blend is the item side alone.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from recsys.interactions import Interactions
from recsys.models.base import FitOptions, Recommender
from recsys.models.baselines import ease_weights
from recsys.models.ease_hybrid import EASEHybrid, activity_scale

log = logging.getLogger(__name__)
FEATURES = ("item_side", "user_side", "log_rank", "popularity")


def user_side_weights(seen: sp.csr_matrix, l2: float, power: float,
                      device: torch.device) -> np.ndarray | None:
    """User-user EASE weights ``B`` (scores = ``B.T @ X``), item columns scaled by popularity."""
    x = seen.astype(np.float32).T  # items x users: EASE's "users" are the items here
    x = (sp.diags(activity_scale(x.tocsr(), power)) @ x).tocsr()
    return ease_weights(x, l2, device).float().cpu().numpy()


def _zscore(s: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Standardize each row over its unseen entries (seen entries get the row's minimum)."""
    masked = np.where(seen, np.nan, s.astype(np.float64))
    with np.errstate(all="ignore"):  # a user who has seen everything has an all-NaN row
        mean = np.nan_to_num(np.nanmean(masked, 1, keepdims=True))
        std = np.nan_to_num(np.nanstd(masked, 1, keepdims=True))
    z = (s - mean) / np.where(std > 0, std, 1.0)
    return np.where(seen, z.min(1, keepdims=True), z)


class EASEEnsemble(Recommender):
    """ease_hybrid + user-side EASE, re-ranked by a blend learned on held-out training rows."""

    name = "ease_ensemble"

    def fit(self, train: Interactions, options: FitOptions) -> "EASEEnsemble":
        self._remember(train)
        fit_part, held = _carve(train, self.config.validation_fraction, options.seed)
        self.weights = np.array([1.0, 0.0, 0.0, 0.0])  # the item side alone, if nothing to learn
        if len(np.unique(held.user_idx)) >= self.config.min_validation_users:
            self._fit_sides(fit_part, options)
            self.weights = self._learn_blend(held.csr("ones"))
        self._fit_sides(train, options)
        self._seen = train.csr("ones")
        return self

    def _fit_sides(self, data: Interactions, options: FitOptions) -> None:
        cfg = self.config
        self.item_model = EASEHybrid(cfg.item_side).fit(data, options)
        self._seen = self.item_model._seen
        pop = np.log1p(np.diff(self._seen.tocsc().indptr).astype(np.float64))
        self.popularity = (pop - pop.mean()) / (pop.std() or 1.0)
        self.user_weights = None
        if data.n_users <= cfg.max_users:
            self.user_weights = user_side_weights(self._seen, cfg.user_l2, cfg.activity_power,
                                                  options.device)
        else:
            log.warning("ease_ensemble: %d users > max_users=%d; user side left out",
                        data.n_users, cfg.max_users)

    def _features(self, user_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(users, n_items, 4) blend features and the item side's rank of every item."""
        u = np.asarray(user_idx)
        seen = self._seen[u].toarray() > 0
        item = self.item_model.score_users(u)
        user = (np.zeros_like(item) if self.user_weights is None
                else np.asarray(self._seen.T @ self.user_weights[:, u]).T)
        rank = np.argsort(np.argsort(-np.where(seen, -np.inf, item), axis=1, kind="stable"),
                          axis=1, kind="stable")
        feats = np.stack([_zscore(item, seen), _zscore(user, seen), np.log1p(rank),
                          np.broadcast_to(self.popularity, item.shape)], axis=-1)
        return feats, rank

    def _learn_blend(self, truth: sp.csr_matrix) -> np.ndarray:
        users = np.flatnonzero(np.diff(truth.indptr))
        feats, rank = self._features(users)
        c = min(self.config.candidates, self.n_items)
        cand = np.argsort(rank, axis=1)[:, :c]
        rows = np.arange(len(users))[:, None]
        x = torch.as_tensor(feats[rows, cand], dtype=torch.float64)
        y = torch.as_tensor(truth[users].toarray()[rows, cand], dtype=torch.float64)
        keep = y.sum(1) > 0
        if not keep.any():
            return self.weights
        return fit_listwise(x[keep], y[keep], self.config.blend_l2)

    def score_users(self, user_idx: np.ndarray) -> np.ndarray:
        self._check_fitted()
        out = []
        for start in range(0, len(user_idx), 1024):  # bounded (1024, n_items, 4) feature block
            feats, rank = self._features(np.asarray(user_idx)[start:start + 1024])
            blend = feats @ self.weights
            inside = rank < self.config.candidates
            floor = np.where(inside, blend, np.inf).min(1, keepdims=True)
            # Outside the candidates: the item side's order, strictly below every candidate.
            out.append(np.where(inside, blend, floor - 1.0 - rank / self.n_items))
        return np.vstack(out).astype(np.float32) if out else np.zeros((0, self.n_items), np.float32)

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return self._score_pairs_by_user(user_idx, item_idx)

    def state(self) -> dict[str, Any]:
        return {"item_model": self.item_model.state(), "user_weights": self.user_weights,
                "popularity": self.popularity, "weights": self.weights}

    def load_state(self, state: dict[str, Any]) -> None:
        self.item_model = EASEHybrid(self.config.item_side)
        self.item_model.n_users, self.item_model.n_items = self.n_users, self.n_items
        self.item_model._seen = self._seen
        self.item_model.load_state(state["item_model"])
        self.user_weights, self.popularity = state["user_weights"], state["popularity"]
        self.weights = state["weights"]


def fit_listwise(x: torch.Tensor, y: torch.Tensor, l2: float) -> np.ndarray:
    """Linear weights maximizing each user's mean log-softmax of held-out items (LBFGS).

    ``x``: (users, candidates, features); ``y``: (users, candidates) 0/1. Starts from the item
    side alone, so a failed optimization still leaves a sensible blend.
    """
    target = y / y.sum(1, keepdim=True)  # every user counts the same
    w = torch.zeros(x.shape[-1], dtype=torch.float64)
    w[0] = 1.0
    w.requires_grad_(True)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = -(torch.log_softmax(x @ w, dim=1) * target).sum() / len(x) + l2 * w.pow(2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    out = w.detach().numpy()
    return out if np.isfinite(out).all() else np.array([1.0, 0.0, 0.0, 0.0])


def _carve(train: Interactions, fraction: float, seed: int) -> tuple[Interactions, Interactions]:
    from recsys.interactions import validation_split

    return validation_split(train, fraction=fraction, seed=seed + 1)
