"""Tiny models for the evaluation tests: fixed scores, and an item-mean rating predictor."""
from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from recsys.interactions import Interactions
from recsys.models.base import FitOptions, Recommender


class FixedScores(Recommender):
    """score(u, i) = scores[u, i]; fit only remembers the seen items."""

    name = "fixed_scores"

    def __init__(self, scores: np.ndarray) -> None:
        super().__init__(None)
        self.scores = np.asarray(scores, np.float32)

    def fit(self, train: Interactions, options: FitOptions) -> "FixedScores":
        self._remember(train)
        return self

    def score(self, user_idx, item_idx):
        return self.scores[user_idx, item_idx]

    def state(self) -> dict[str, Any]:
        return {"scores": self.scores}

    def load_state(self, state: dict[str, Any]) -> None:
        self.scores = state["scores"]


class ItemMeanConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    shrink: float = 0.0


class ItemMean(Recommender):
    """Predicts each item's (shrunk) mean rating; ranks items by it."""

    name = "item_mean"
    predicts_ratings = True

    def fit(self, train: Interactions, options: FitOptions) -> "ItemMean":
        self._remember(train)
        mu = float(np.nanmean(train.rating))
        sums = np.bincount(train.item_idx, weights=train.rating, minlength=train.n_items)
        counts = np.bincount(train.item_idx, minlength=train.n_items)
        denom = counts + self.config.shrink
        means = np.where(denom > 0, (sums + self.config.shrink * mu) / np.maximum(denom, 1e-12), mu)
        self.means = means.astype(np.float32)
        return self

    def score(self, user_idx, item_idx):
        return self.means[np.asarray(item_idx)]

    def state(self) -> dict[str, Any]:
        return {"means": self.means}

    def load_state(self, state: dict[str, Any]) -> None:
        self.means = state["means"]


class Broken(ItemMean):
    """Fails to train, to show one broken family does not stop the benchmark."""

    name = "broken"

    def fit(self, train: Interactions, options: FitOptions) -> "Broken":
        raise RuntimeError("deliberately broken")
