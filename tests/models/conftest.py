"""Tiny synthetic block data shared by the model tests.

Users fall into groups; each group likes its own block of items. Every user has seen all items of
its block but one (its held-out item), so a recommender that learns the blocks must put the
held-out item first. Items carry their group as a one-hot feature, users their group too.
"""
from __future__ import annotations

import numpy as np
import pytest

from recsys.models import Interactions

GROUPS, USERS_PER_GROUP, ITEMS_PER_GROUP = 3, 20, 6


def make_blocks(explicit: bool = False) -> tuple[Interactions, np.ndarray]:
    """(train, held_out_item_per_user). ``explicit`` adds 1-star ratings outside the block."""
    users, items, ratings = [], [], []
    held = []
    for u in range(GROUPS * USERS_PER_GROUP):
        g = u % GROUPS
        block = [g * ITEMS_PER_GROUP + k for k in range(ITEMS_PER_GROUP)]
        out = block[(u // GROUPS) % ITEMS_PER_GROUP]
        held.append(out)
        for i in block:
            if i != out:
                users.append(u), items.append(i), ratings.append(5.0)
        if explicit:  # two disliked items from the next block
            nxt = ((g + 1) % GROUPS) * ITEMS_PER_GROUP
            for i in (nxt + u % ITEMS_PER_GROUP, nxt + (u + 1) % ITEMS_PER_GROUP):
                users.append(u), items.append(i), ratings.append(1.0)
    n_users, n_items = GROUPS * USERS_PER_GROUP, GROUPS * ITEMS_PER_GROUP
    onehot = lambda n, per: np.eye(GROUPS, dtype=np.float32)[  # noqa: E731
        (np.arange(n) // per) if per else (np.arange(n) % GROUPS)]
    train = Interactions(
        user_idx=np.array(users, np.int64), item_idx=np.array(items, np.int64),
        weight=np.ones(len(users), np.float32), n_users=n_users, n_items=n_items,
        rating=np.array(ratings, np.float32),
        user_features=onehot(n_users, 0), item_features=onehot(n_items, ITEMS_PER_GROUP),
    )
    return train, np.array(held, np.int64)


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread():
    """Tiny tensors: a second intra-op thread only adds contention on a shared CI box."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def blocks() -> tuple[Interactions, np.ndarray]:
    return make_blocks()


@pytest.fixture(scope="session")
def explicit_blocks() -> tuple[Interactions, np.ndarray]:
    return make_blocks(explicit=True)
