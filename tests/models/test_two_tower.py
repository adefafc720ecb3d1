"""The hybrid scores users and items that have no interactions from their features alone."""
from __future__ import annotations

import dataclasses

import numpy as np

from recsys.models import FitOptions, build_model
from recsys.models.features import hashed_text, multi_hot, numeric

from .conftest import GROUPS, ITEMS_PER_GROUP, make_blocks


def test_cold_users_and_items_are_scored_from_features():
    train, _ = make_blocks()
    n_users, n_items = train.n_users + GROUPS, train.n_items + GROUPS
    eye = np.eye(GROUPS, dtype=np.float32)
    # One brand-new user and one brand-new item per group: features, no interactions.
    data = dataclasses.replace(
        train, n_users=n_users, n_items=n_items,
        user_features=np.vstack([train.user_features, eye]),
        item_features=np.vstack([train.item_features, eye]))
    model = build_model("two_tower", {"dim": 8, "hidden": 16, "epochs": 30, "batch_size": 32,
                                      "negatives": 8}).fit(data, FitOptions(seed=1))
    new_users = np.arange(train.n_users, n_users)
    top, _ = model.recommend(new_users, ITEMS_PER_GROUP)
    groups = np.where(top < train.n_items, top // ITEMS_PER_GROUP, top - train.n_items)
    assert (groups == np.arange(GROUPS)[:, None]).all()  # their group's items, new one included
    new_item_scores = model.score_users(np.arange(train.n_users))[:, train.n_items:]
    user_group = np.arange(train.n_users) % GROUPS
    assert (new_item_scores.argmax(1) == user_group).all()  # a new item reaches its group


def test_feature_builders():
    block, vocab = multi_hot([["Drama", "War"], [], ["Drama"]])
    assert vocab == ["Drama", "War"]
    np.testing.assert_array_equal(block, [[1, 1], [0, 0], [1, 0]])
    num = numeric([1990.0, np.nan, 2000.0])
    np.testing.assert_allclose(num, [[-1, 0], [0, 1], [1, 0]])
    text = hashed_text(["Star Wars", "star  WARS!", None], dim=64)
    np.testing.assert_allclose(text[0], text[1])
    assert np.isclose(np.linalg.norm(text[0]), 1.0) and not text[2].any()
