"""Vectorized negative sampling: uniform items that the user has not interacted with."""
from __future__ import annotations

import numpy as np
import torch


class NegativeSampler:
    """Draws, for each user in a tensor, an item outside that user's training items.

    Seen (user, item) pairs are held as sorted int64 keys ``user * n_items + item``; a draw is
    checked with one ``searchsorted`` and the collisions are redrawn, a few rounds at most (any
    still colliding after that are kept: with sparse data they are vanishingly rare).
    """

    def __init__(self, user_idx: np.ndarray, item_idx: np.ndarray, n_items: int,
                 rounds: int = 5) -> None:
        keys = np.unique(user_idx.astype(np.int64) * n_items + item_idx.astype(np.int64))
        self.keys = torch.from_numpy(keys)
        self.n_items = n_items
        self.rounds = rounds

    def _seen(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        key = users * self.n_items + items
        pos = torch.searchsorted(self.keys, key).clamp_(max=len(self.keys) - 1)
        return self.keys[pos] == key

    def sample(self, users: torch.Tensor, gen: torch.Generator, per_user: int = 1) -> torch.Tensor:
        """int64 (len(users), per_user) negatives; ``users`` and the result live on the CPU."""
        users = users.reshape(-1, 1).expand(-1, per_user)
        items = torch.randint(0, self.n_items, users.shape, generator=gen)
        for _ in range(self.rounds):
            bad = self._seen(users, items)
            n_bad = int(bad.sum())
            if n_bad == 0:
                break
            items[bad] = torch.randint(0, self.n_items, (n_bad,), generator=gen)
        return items
