"""The negative sampler's fast path (index_select / index_copy_, the first check on every draw
at once) draws exactly what the plain redraw loop draws from the same generator."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.models._sampling import NegativeSampler


def _plain_loop(sampler: NegativeSampler, users: torch.Tensor, gen: torch.Generator,
                per_user: int) -> torch.Tensor:
    """The sampler as first written: advanced indexing on the positions still to redraw."""
    users = users.reshape(-1, 1).expand(-1, per_user).reshape(-1)
    items = torch.randint(0, sampler.n_items, users.shape, generator=gen)
    todo = torch.arange(len(users))
    for _ in range(sampler.rounds):
        todo = todo[sampler._seen(users[todo], items[todo])]
        if len(todo) == 0:
            break
        items[todo] = torch.randint(0, sampler.n_items, (len(todo),), generator=gen)
    return items.reshape(-1, per_user)


@pytest.mark.parametrize("dense_cells", [10**9, 0])  # dense table; sorted keys
@pytest.mark.parametrize("per_user,rounds", [(1, 10), (3, 10), (2, 1)])
def test_sampler_draws_what_the_plain_loop_draws(dense_cells, per_user, rounds):
    rng = np.random.default_rng(7)
    n_users, n_items = 40, 30
    users = np.repeat(np.arange(n_users), 20)  # 20 of 30 items seen: many redraws
    items = np.concatenate([rng.choice(n_items, 20, replace=False) for _ in range(n_users)])
    sampler = NegativeSampler(users, items, n_items, rounds=rounds, dense_cells=dense_cells)
    draw = torch.from_numpy(rng.integers(0, n_users, 500))
    fast = sampler.sample(draw, torch.Generator().manual_seed(3), per_user=per_user)
    plain = _plain_loop(sampler, draw, torch.Generator().manual_seed(3), per_user)
    assert torch.equal(fast, plain)
