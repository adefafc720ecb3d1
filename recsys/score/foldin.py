"""Fold-in: personal lists tonight for users the model was not trained on, without retraining.

A user whose first events arrived after the model's training day is in the day's training set but
not in the model's user map. Instead of the popularity fallback, such a user is scored from their
history ``x_u`` (binary, over the model's items; items the model does not know are ignored):

* factorized models: the ridge least-squares user vector against the item factors,
  ``u = (V'V + l2 I)^-1 V' x_u``, then the usual product with the item vectors. ``l2`` defaults to
  ``L2_SHARE`` x the mean eigenvalue of ``V'V`` (``trace(V'V) / f``), which makes it independent
  of the scale of the factors (each family trains them at its own scale);
* item-item models (EASE family, item-kNN): the item-item product ``x_u @ B``, exactly what the
  model computes for the users it was trained on.

Their rows carry ``source = fold_in`` and a ``because`` like model rows. Users with no history,
or whose history holds no item the model knows, still get the cold-start lists. Both engines
call :func:`fold_in_block`; other families (neural ones) have no fold-in and keep the fallback.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from recsys.models.base import Recommender, top_n
from recsys.score import reasons
from recsys.score.topn import FactorizedScorer, block_mask_coords

# The ridge's l2 as a share of the mean eigenvalue of V'V (picked on MovieLens-100K held-out
# users: docs/benchmarks.md, "Fold-in").
L2_SHARE = 100.0


class FoldIn:
    """Scores users from their history; build with :meth:`for_model` or :meth:`for_vectors`."""

    def __init__(self, n_items: int, items: np.ndarray | None, vectors: np.ndarray | None = None,
                 matrix: np.ndarray | sp.spmatrix | None = None, l2: float | None = None) -> None:
        self.n_items, self.items = n_items, items
        self.matrix = matrix
        self.scorer = None
        if vectors is not None:
            v = np.asarray(vectors, np.float64)
            gram = v.T @ v
            self.l2 = float(l2 if l2 is not None else L2_SHARE * np.trace(gram) / max(v.shape[1], 1))
            self._solve = np.linalg.inv(gram + max(self.l2, 1e-9) * np.eye(v.shape[1]))
            self._v = v
            self.scorer = FactorizedScorer(np.zeros((0, v.shape[1]), np.float32), vectors, items=items)

    @classmethod
    def for_model(cls, model: Recommender, items: np.ndarray | None = None,
                  l2: float | None = None) -> "FoldIn | None":
        """The fold-in of ``model`` (``items``: the model items that may be recommended, None =
        all); None for families that cannot fold users in."""
        matrix = reasons.item_item_matrix(model)
        if matrix is not None:
            return cls(model.n_items, items, matrix=matrix)
        if model.factorized:
            return cls(model.n_items, items, vectors=model.item_vectors(), l2=l2)
        return None

    @classmethod
    def for_vectors(cls, item_vectors: np.ndarray, items: np.ndarray | None = None,
                    l2: float | None = None) -> "FoldIn":
        """The fold-in of a factorized model known only by its item vectors (the Spark engine)."""
        return cls(len(item_vectors), items, vectors=item_vectors, l2=l2)

    def histories(self, rows: np.ndarray, items: np.ndarray, b: int) -> sp.csr_matrix:
        x = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, items)), shape=(b, self.n_items))
        x.data[:] = 1.0  # duplicates summed by the constructor: histories are binary
        return x

    def user_vectors(self, rows: np.ndarray, items: np.ndarray, b: int) -> np.ndarray:
        """Ridge user vectors (b, f) of the histories (``rows``: user in block, ``items``: model
        item index)."""
        xv = np.asarray(self.histories(rows, items, b) @ self._v)
        return (xv @ self._solve).astype(np.float32)  # _solve is symmetric

    def topn(self, rows: np.ndarray, items: np.ndarray, b: int, n: int, mask_rows: np.ndarray,
             mask_cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` (model items, scores) of ``b`` users; masks in scored columns (the positions
        in ``self.items``, as every scorer of recsys.score.topn numbers them)."""
        if self.scorer is not None:
            return self.scorer.topn_vectors(self.user_vectors(rows, items, b), n, mask_rows, mask_cols)
        scores = self.histories(rows, items, b) @ self.matrix
        scores = np.asarray(scores.todense() if sp.issparse(scores) else scores, np.float32)
        if self.items is not None:
            scores = scores[:, self.items]
        return top_n(torch.from_numpy(np.ascontiguousarray(scores)), n, mask_rows, mask_cols, self.items)


def history(seen: sp.csr_matrix, users: np.ndarray, day_to_model: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row in block, model item, day item) of the history entries of ``users`` (rows of the day's
    CSR ``seen``); entries of items the model does not know are dropped."""
    r, day = block_mask_coords(seen.indptr, seen.indices, np.asarray(users, np.int64))
    model = day_to_model[day] if len(day) else day
    keep = model >= 0
    return r[keep], model[keep], day[keep]


def fold_in_block(fold: FoldIn, support: reasons.Support | None, seen: sp.csr_matrix,
                  users: np.ndarray, day_to_model: np.ndarray, seen_cols: np.ndarray, n: int,
                  exclude_seen: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Fold in the users ``users`` (rows of ``seen``, the day's users x items CSR).

    Returns (ok, items, scores, because): ``ok`` marks the users folded in (those with at least one
    item the model knows); the other arrays hold their rows, in model item indices.
    """
    r, model_items, day_items = history(seen, users, day_to_model)
    ok = np.zeros(len(users), bool)
    ok[r] = True
    if not ok.any():
        empty = np.empty((0, n), np.int64)
        return ok, empty, np.empty((0, n), np.float32), None
    new_row = np.cumsum(ok) - 1  # row among the folded users
    r = new_row[r]
    b = int(ok.sum())
    if exclude_seen:
        # Every seen item the scorer scores is masked, known to the model or not.
        mr, day_all = block_mask_coords(seen.indptr, seen.indices, np.asarray(users, np.int64)[ok])
        mc = seen_cols[day_all] if len(day_all) else day_all
        mr, mc = mr[mc >= 0], mc[mc >= 0]
    else:
        mr = mc = np.empty(0, np.int64)
    top, scores = fold.topn(r, model_items, b, n, mr, mc)
    why = None if support is None else reasons.because(support, r, model_items, top,
                                                           may_overlap=not exclude_seen)
    return ok, top, scores, why
