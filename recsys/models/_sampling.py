"""Vectorized negative sampling: uniform items that the user has not interacted with."""
from __future__ import annotations

import numpy as np
import torch

# Up to this many (user, item) cells, seen pairs are held as a dense bitmap (one byte per cell:
# 128 MiB); beyond, as sorted keys searched with ``searchsorted``.
DENSE_CELLS = 1 << 27


class NegativeSampler:
    """Draws, for each user in a tensor, an item outside that user's training items.

    Seen (user, item) pairs are held as a dense boolean matrix when ``n_users * n_items`` is at
    most :data:`DENSE_CELLS` (a lookup is one gather), else as sorted int64 keys
    ``user * n_items + item`` (one ``searchsorted``). Collisions are redrawn, and only they are
    checked again, ``rounds`` times at most (any still colliding after that are kept: with
    sparse data they are vanishingly rare; a user who has seen every item keeps a seen one).
    """

    def __init__(self, user_idx: np.ndarray, item_idx: np.ndarray, n_items: int,
                 rounds: int = 10, dense_cells: int = DENSE_CELLS) -> None:
        keys = user_idx.astype(np.int64) * n_items + item_idx.astype(np.int64)
        n_users = int(user_idx.max()) + 1 if len(user_idx) else 0
        self.n_items = n_items
        self.rounds = rounds
        self.dense: torch.Tensor | None = None
        self.keys: torch.Tensor | None = None
        if n_users * n_items <= dense_cells:
            dense = np.zeros(n_users * n_items, dtype=bool)
            dense[keys] = True
            self.dense = torch.from_numpy(dense)
        else:
            self.keys = torch.from_numpy(np.unique(keys))

    def _seen(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        key = torch.add(items, users, alpha=self.n_items)
        if self.dense is not None:
            return self.dense.index_select(0, key)
        if len(self.keys) == 0:
            return torch.zeros_like(key, dtype=torch.bool)
        pos = torch.searchsorted(self.keys, key).clamp_(max=len(self.keys) - 1)
        return self.keys.index_select(0, pos) == key

    def sample(self, users: torch.Tensor, gen: torch.Generator, per_user: int = 1) -> torch.Tensor:
        """int64 (len(users), per_user) negatives; ``users`` and the result live on the CPU.

        The first check runs on all draws at once (no gather of everything by an index of
        everything), later ones only on the redrawn positions; ``index_select`` /
        ``index_copy_`` rather than advanced indexing, several times faster on a CPU. The
        generator draws exactly what the plain loop would, so the negatives are the same.
        """
        users = users.reshape(-1, 1).expand(-1, per_user).reshape(-1)
        items = torch.randint(0, self.n_items, users.shape, generator=gen)
        todo: torch.Tensor | None = None  # None: every position
        for _ in range(self.rounds):
            if todo is None:
                todo = self._seen(users, items).nonzero().squeeze(1)
            else:
                seen = self._seen(users.index_select(0, todo), items.index_select(0, todo))
                todo = todo.masked_select(seen)
            if len(todo) == 0:
                break
            items.index_copy_(0, todo, torch.randint(0, self.n_items, (len(todo),),
                                                     generator=gen))
        return items.reshape(-1, per_user)
