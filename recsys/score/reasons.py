"""`because`: the items of a user's own history that most support each recommended item.

Computed per block of users, in the same pass as the top-N (both engines call :func:`because`):
the block's history entries x the block's chosen items, as one batched product or gather, then a
top-``MAX_BECAUSE`` over each user's history. What "support" means depends on the model:

* item-item models (EASE family, item-kNN; anything exposing ``item_item_matrix()``): the score of
  item ``i`` for user ``u`` is ``sum_j x_uj * B[j, i]``, so the supporting items are the history
  items ``j`` with the largest terms ``x_uj * B[j, i]`` (``x`` is the binary history the models
  score with, so the term is ``B[j, i]``);
* factorized models: the history items nearest to ``i`` in the model's item space (cosine of the
  item vectors the model scores with).

Only positive support counts (an item whose term is <= 0 does not argue for the recommendation),
and the recommended item itself is never its own reason. Items are model item indices; -1 pads.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
import scipy.sparse as sp
import torch

from recsys.models.base import Recommender
from recsys.schema import MAX_BECAUSE

# Cells of the (rows, n, history) support tensor materialized at once (bounds memory).
_CELLS = 1 << 22


class Support(Protocol):
    def terms(self, hist: np.ndarray, chosen: np.ndarray) -> torch.Tensor:
        """(c, n, H) support of history item ``hist[r, h]`` for chosen item ``chosen[r, k]``
        (both model item indices, already clipped to >= 0; the caller masks padding)."""


class ItemItemSupport:
    """Terms ``B[j, i]`` of an item-item model (``B``: dense array or sparse matrix)."""

    def __init__(self, matrix: np.ndarray | sp.spmatrix) -> None:
        if sp.issparse(matrix) and matrix.shape[0] * matrix.shape[1] <= 1 << 26:
            matrix = matrix.toarray()  # item-kNN on a catalog small enough: gathers are cheaper
        self.sparse = sp.issparse(matrix)
        self.b = matrix.tocsr() if self.sparse else torch.from_numpy(np.ascontiguousarray(matrix, np.float32))

    def terms(self, hist: np.ndarray, chosen: np.ndarray) -> torch.Tensor:
        rows = np.broadcast_to(hist[:, None, :], (len(hist), chosen.shape[1], hist.shape[1]))
        cols = np.broadcast_to(chosen[:, :, None], rows.shape)
        if self.sparse:
            vals = np.asarray(self.b[rows.ravel(), cols.ravel()], np.float32).reshape(rows.shape)
            return torch.from_numpy(vals)
        return self.b[torch.from_numpy(np.ascontiguousarray(rows)), torch.from_numpy(np.ascontiguousarray(cols))]


class VectorSupport:
    """Cosine of item vectors: a batched product of the chosen items' and the history's vectors."""

    def __init__(self, item_vectors: np.ndarray) -> None:
        v = np.asarray(item_vectors, np.float32)
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        self.v = torch.from_numpy(np.ascontiguousarray(v / np.where(norms > 0, norms, 1.0)))

    def terms(self, hist: np.ndarray, chosen: np.ndarray) -> torch.Tensor:
        a = self.v[torch.from_numpy(chosen)]  # (c, n, f)
        h = self.v[torch.from_numpy(hist)]  # (c, H, f)
        return torch.bmm(a, h.transpose(1, 2))


def support_for(model: Recommender | None, item_vectors: np.ndarray | None = None) -> Support | None:
    """The support of ``model`` (item-item matrix first, else its item vectors), or of plain
    ``item_vectors`` (the Spark engine's executors hold only those). None: no reasons."""
    if model is not None:
        matrix = item_item_matrix(model)
        if matrix is not None:
            return ItemItemSupport(matrix)
        if model.factorized:
            return VectorSupport(model.item_vectors())
        return None
    return None if item_vectors is None else VectorSupport(item_vectors)


def item_item_matrix(model: Recommender) -> np.ndarray | sp.spmatrix | None:
    """``B`` (items x items, scores = ``x_u @ B``) when the model scores that way, else None."""
    fn = getattr(model, "item_item_matrix", None)
    return fn() if callable(fn) else None


def because(support: Support, rows: np.ndarray, items: np.ndarray, chosen: np.ndarray,
            k: int = MAX_BECAUSE) -> np.ndarray:
    """(b, n, k) history items (model indices, -1 padded) behind each chosen item, best first.

    ``rows``/``items``: the block's history entries (row in block, model item index; entries of
    items the model does not know are dropped by the caller); ``chosen``: (b, n) recommended model
    items, -1 padded.
    """
    b, n = chosen.shape
    out = np.full((b, n, k), -1, np.int64)
    keep = items >= 0
    rows, items = np.asarray(rows, np.int64)[keep], np.asarray(items, np.int64)[keep]
    if not len(rows) or not n:
        return out
    order = np.argsort(rows, kind="stable")
    rows, items = rows[order], items[order]
    counts = np.bincount(rows, minlength=b)
    starts = np.cumsum(counts) - counts
    # Users by history length, cut into chunks whose padded (rows, n, H) tensor stays small.
    by_len = np.argsort(counts, kind="stable")
    by_len = by_len[counts[by_len] > 0]
    pos = 0
    while pos < len(by_len):
        h = int(counts[by_len[pos]])
        take = 1
        while pos + take < len(by_len):
            nxt = int(counts[by_len[pos + take]])
            if (take + 1) * n * nxt > _CELLS:
                break
            take += 1
            h = nxt
        chunk = by_len[pos:pos + take]
        pos += take
        _chunk(support, chunk, counts[chunk], starts[chunk], h, items, chosen, k, out)
    return out


def _chunk(support: Support, users: np.ndarray, counts: np.ndarray, starts: np.ndarray, h: int,
           items: np.ndarray, chosen: np.ndarray, k: int, out: np.ndarray) -> None:
    c = len(users)
    hist = np.full((c, h), -1, np.int64)
    r = np.repeat(np.arange(c), counts)
    col = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    hist[r, col] = items[np.repeat(starts, counts) + col]
    pick = chosen[users]
    terms = support.terms(np.maximum(hist, 0), np.maximum(pick, 0)).float()
    bad = torch.from_numpy((hist[:, None, :] < 0) | (hist[:, None, :] == pick[:, :, None]))
    terms = terms.masked_fill(bad, -torch.inf)
    vals, idx = torch.topk(terms, min(k, h), dim=2, sorted=True)
    vals, idx = vals.numpy(), idx.numpy()
    got = np.take_along_axis(np.broadcast_to(hist[:, None, :], terms.shape), idx, axis=2)
    got = np.where((vals > 0) & np.isfinite(vals) & (pick[:, :, None] >= 0), got, -1)
    out[users, :, : got.shape[2]] = got
