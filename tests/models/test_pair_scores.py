"""Pair scores of the item-item families (the re-ranking path of large catalogs).

Regression: ``score(user, item)`` of EASE / ease_hybrid computed every user's whole score row
(history × catalog) and then read the candidates, so re-ranking 200 candidates of a 20k-item
catalog cost a full scoring pass (`recsys bench nightly` at 100k × 20k did not finish scoring in
20 minutes). Pair scores now touch only the user's history."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.bench.train import synthetic_interactions
from recsys.models.base import FitOptions
from recsys.models.registry import build_model


@pytest.fixture(scope="module")
def data():
    return synthetic_interactions(300, 200, 5000, seed=3)


@pytest.mark.parametrize("family", ["ease", "ease_hybrid", "itemknn"])
def test_pair_scores_equal_the_whole_rows(family, data):
    model = build_model(family, {})
    model.fit(data, FitOptions(device=torch.device("cpu"), seed=0))
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 300, 4000), rng.integers(0, 200, 4000)
    full = model.score_users(np.arange(300))
    np.testing.assert_allclose(model.score(users, items), full[users, items], atol=1e-5)


@pytest.mark.parametrize("family", ["ease", "ease_hybrid"])
def test_pair_scores_never_compute_whole_rows(family, data, monkeypatch):
    model = build_model(family, {})
    model.fit(data, FitOptions(device=torch.device("cpu"), seed=0))
    expected = model.score_users(np.array([5, 7]))[:, [1, 2]]

    def whole_rows(*_):
        raise AssertionError("pair scores computed whole score rows")

    monkeypatch.setattr(model, "score_users", whole_rows)
    got = model.score(np.array([5, 5, 7, 7]), np.array([1, 2, 1, 2]))
    np.testing.assert_allclose(got, expected.ravel(), atol=1e-5)
