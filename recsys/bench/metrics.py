"""``recsys bench metrics``: the speed of the vectorized ranking metrics on random top-k lists."""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from recsys.metrics import ranking_metrics


def time_metrics(users: int, items: int, relevant: int, k: int, repeat: int) -> float:
    """Best-of-``repeat`` seconds of :func:`recsys.metrics.ranking_metrics`; prints the figure."""
    rng = np.random.default_rng(0)
    recs = rng.integers(0, items, size=(users, k))
    indptr = np.arange(0, users * relevant + 1, relevant)
    truth = sp.csr_matrix((np.ones(users * relevant),
                           rng.integers(0, items, users * relevant), indptr), shape=(users, items))
    best = float("inf")
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        ranking_metrics(recs, truth, k)
        best = min(best, time.perf_counter() - t0)
    print(f"ranking metrics @{k}: {users} users x {items} items, "
          f"{relevant} held-out items each: {best:.3f} s (best of {repeat})")
    return best
