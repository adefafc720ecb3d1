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

# Cells of the (rows, n, history) support tensor materialized at once: small enough that a
# chunk's gather, product and top-k stay in cache.
_CELLS = 1 << 18


class Support(Protocol):
    n_items: int

    def terms(self, hist: np.ndarray, chosen: np.ndarray) -> torch.Tensor:
        """(c, n, H) support of history item ``hist[r, h]`` for chosen item ``chosen[r, k]``
        (model item indices; padding is index ``n_items``, whose support is 0)."""


class ItemItemSupport:
    """Terms ``B[j, i]`` of an item-item model (``B``: dense array or sparse matrix; a dense one
    is read in place, never copied: EASE's is n_items^2 floats)."""

    def __init__(self, matrix: np.ndarray | sp.spmatrix) -> None:
        if sp.issparse(matrix) and matrix.shape[0] * matrix.shape[1] <= 1 << 26:
            matrix = matrix.toarray()  # item-kNN on a catalog small enough: gathers are cheaper
        self.sparse = sp.issparse(matrix)
        self.n_items = matrix.shape[0]
        if self.sparse:
            self.b = matrix.tocsr()
        else:
            self.flat = torch.from_numpy(np.ascontiguousarray(matrix, np.float32)).view(-1)
            self.width = matrix.shape[1]

    def terms(self, hist: np.ndarray, chosen: np.ndarray) -> torch.Tensor:
        padded = hist >= self.n_items
        hist = np.where(padded, 0, hist)
        if self.sparse:
            rows = np.broadcast_to(hist[:, None, :], (len(hist), chosen.shape[1], hist.shape[1]))
            cols = np.broadcast_to(np.minimum(chosen, self.n_items - 1)[:, :, None], rows.shape)
            vals = torch.from_numpy(np.asarray(self.b[rows.ravel(), cols.ravel()], np.float32).reshape(rows.shape))
        else:
            # B[j, i] at flat position j * width + i, gathered in one pass.
            pos = (torch.from_numpy(hist * self.width)[:, None, :]
                   + torch.from_numpy(np.minimum(chosen, self.n_items - 1))[:, :, None])
            vals = self.flat.take(pos)
        return vals.masked_fill_(torch.from_numpy(padded)[:, None, :], 0.0)


class VectorSupport:
    """Cosine of item vectors: a batched product of the chosen items' and the history's vectors."""

    def __init__(self, item_vectors: np.ndarray) -> None:
        v = np.asarray(item_vectors, np.float32)
        self.n_items = len(v)
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        unit = np.zeros((len(v) + 1, v.shape[1]), np.float32)  # one zero row more: the padding
        unit[: len(v)] = v / np.where(norms > 0, norms, 1.0)
        self.v = torch.from_numpy(unit)

    def terms(self, hist: np.ndarray, chosen: np.ndarray) -> torch.Tensor:
        c, n, h, f = len(chosen), chosen.shape[1], hist.shape[1], self.v.shape[1]
        a = self.v.index_select(0, torch.from_numpy(chosen.reshape(-1))).view(c, n, f)
        b = self.v.index_select(0, torch.from_numpy(hist.reshape(-1))).view(c, h, f)
        return torch.bmm(a, b.transpose(1, 2))


def support_for(model: Recommender) -> Support | None:
    """The support of ``model``: its item-item matrix, else its item vectors; None: no reasons
    (families that neither factorize nor expose an item-item matrix)."""
    matrix = item_item_matrix(model)
    if matrix is not None:
        return ItemItemSupport(matrix)
    if model.factorized:
        return VectorSupport(model.item_vectors())
    return None


def item_item_matrix(model: Recommender) -> np.ndarray | sp.spmatrix | None:
    """``B`` (items x items, scores = ``x_u @ B``) when the model scores that way, else None."""
    fn = getattr(model, "item_item_matrix", None)
    return fn() if callable(fn) else None


def because(support: Support, rows: np.ndarray, items: np.ndarray, chosen: np.ndarray,
            k: int = MAX_BECAUSE, may_overlap: bool = True) -> np.ndarray:
    """(b, n, k) history items (model indices, -1 padded) behind each chosen item, best first.

    ``rows``/``items``: the block's history entries (row in block, model item index; -1 entries,
    items the model does not know, are dropped); ``chosen``: (b, n) recommended model items, -1
    padded. ``may_overlap=False`` promises that no chosen item is in its user's history (seen
    items were masked), which skips that check.
    """
    b, n = chosen.shape
    out = np.full((b, n, k), -1, np.int64)
    keep = np.asarray(items) >= 0
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
    lengths = counts[by_len]
    pos = 0
    while pos < len(by_len):
        # The longest prefix whose padded size (rows x n x its longest history) fits the budget.
        fits = (np.arange(1, len(by_len) - pos + 1) * n * lengths[pos:]) <= _CELLS
        take = max(1, int(np.argmin(fits)) if not fits.all() else len(fits))
        chunk = by_len[pos:pos + take]
        _chunk(support, chunk, counts[chunk], starts[chunk], int(lengths[pos + take - 1]), items, chosen,
               k, out, may_overlap)
        pos += take
    return out


def _chunk(support: Support, users: np.ndarray, counts: np.ndarray, starts: np.ndarray, h: int,
           items: np.ndarray, chosen: np.ndarray, k: int, out: np.ndarray, may_overlap: bool) -> None:
    c, pad = len(users), support.n_items
    hist = np.full((c, h), pad, np.int64)  # padding: the zero-support index
    r = np.repeat(np.arange(c), counts)
    col = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    hist[r, col] = items[np.repeat(starts, counts) + col]
    pick = chosen[users]
    terms = support.terms(hist, np.where(pick >= 0, pick, pad)).float()  # (c, n, H)
    if may_overlap:  # a recommended item that is also in the history is not its own reason
        width = pad + 1
        same = np.isin(r * width + hist[r, col], np.repeat(np.arange(c), pick.shape[1]) * width + pick.ravel())
        if same.any():
            rr, hh = r[same], col[same]
            kk = np.argmax(pick[rr] == hist[rr, hh][:, None], axis=1)
            terms[torch.from_numpy(rr), torch.from_numpy(kk), torch.from_numpy(hh)] = -torch.inf
    vals, idx = _top_k(terms.numpy(), min(k, h))
    got = hist[np.arange(c)[:, None, None], idx]
    out[users, :, : got.shape[2]] = np.where((vals > 0) & (pick[:, :, None] >= 0), got, -1)


def _top_k(terms: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, positions) of the ``k`` largest entries along the last (short) axis, best first.

    ``np.argpartition`` then a sort of the ``k`` survivors: about half the CPU of ``torch.topk``
    along a short axis (measured: 20 vs 39 ms for 2,048 x 100 x 20); an insertion network and
    repeated max + scatter were slower still. Only positive support counts afterwards (padding
    is 0, masked cells -inf).
    """
    h = terms.shape[-1]
    idx = np.argpartition(terms, h - k, axis=-1)[..., h - k:] if k < h else np.broadcast_to(
        np.arange(h), terms.shape).copy()
    vals = np.take_along_axis(terms, idx, axis=-1)
    order = np.argsort(-vals, axis=-1, kind="stable")
    return np.take_along_axis(vals, order, axis=-1), np.take_along_axis(idx, order, axis=-1)
