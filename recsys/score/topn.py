"""Top-N for many users at once: blocked user x item products, masks, top-k on the device.

A block of users is scored against the whole (filtered) catalog in one matrix product; seen items
are set to -inf from the block's sparse rows, unavailable items are never scored at all (their
columns are dropped up front), and ``torch.topk`` keeps the best ``n``. Memory is set by
``block_size x n_items``, never by the number of users.

Non-factorized models either score the full catalog per block (``score_users``, fine for small
catalogs) or re-rank the top-``M`` candidates of a factorized model with ``score``.

Every scorer takes optional business rules (:class:`recsys.score.rules.ItemRules`) and applies
them to each block's scores before the cut (:func:`cut`); both engines build their lists here.
"""
from __future__ import annotations

import numpy as np
import torch

from recsys.config import ScoreConfig
from recsys.models.base import Recommender, top_n
from recsys.score.rules import ItemRules


def block_mask_coords(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray,
                      col_map: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(row-in-block, column) of the nonzeros of CSR rows ``rows``, columns mapped by ``col_map``.

    ``col_map[c]`` is the column's position in the scored catalog, -1 where it is not scored
    (then the entry is dropped: an item that is not scored cannot be recommended anyway).
    """
    starts, stops = indptr[rows], indptr[rows + 1]
    lengths = stops - starts
    if lengths.sum() == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    r = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
    # Gather every row's slice of `indices` without a Python loop.
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    c = indices[np.arange(lengths.sum()) + offsets].astype(np.int64)
    if col_map is not None:
        c = col_map[c]
        keep = c >= 0
        r, c = r[keep], c[keep]
    return r, c


class FactorizedScorer:
    """Top-N by blocked matrix products of user and item vectors on ``device``.

    ``items`` (optional) restricts the catalog to those item indices, e.g. the available ones;
    results are always in the model's item index space. ``rules``: business rules applied
    before the cut (:mod:`recsys.score.rules`).
    """

    def __init__(self, user_vectors: np.ndarray, item_vectors: np.ndarray,
                 device: torch.device = torch.device("cpu"), items: np.ndarray | None = None,
                 rules: ItemRules | None = None) -> None:
        self.device, self.rules = device, rules
        self.n_items = len(item_vectors)
        self.items = None if items is None else np.asarray(items, dtype=np.int64)
        vecs = item_vectors if self.items is None else item_vectors[self.items]
        self._u = torch.from_numpy(np.ascontiguousarray(user_vectors, np.float32)).to(device)
        # (f, m) contiguous: the block product is then a plain GEMM with no transposed copy.
        self._vt = torch.from_numpy(np.ascontiguousarray(vecs.T, np.float32)).to(device)
        self.col_map = _col_map(self.items, self.n_items)

    def topn(self, users: np.ndarray, n: int, mask_rows: np.ndarray, mask_cols: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` (items, scores) for model users ``users``; mask coords in scored columns."""
        idx = torch.from_numpy(np.asarray(users, np.int64)).to(self.device)
        return self._topn(self._u.index_select(0, idx), n, mask_rows, mask_cols)

    def topn_vectors(self, user_vectors: np.ndarray, n: int, mask_rows: np.ndarray,
                     mask_cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`topn` for explicit user vectors (the Spark path ships them per batch)."""
        u = torch.from_numpy(np.ascontiguousarray(user_vectors, np.float32)).to(self.device)
        return self._topn(u, n, mask_rows, mask_cols)

    def _topn(self, u: torch.Tensor, n: int, mask_rows, mask_cols):
        with torch.no_grad():
            return cut(u @ self._vt, n, mask_rows, mask_cols, self.items, self.rules)


class FullScorer:
    """Top-N for any model by scoring every (filtered) item with ``model.score_users``."""

    def __init__(self, model: Recommender, device: torch.device = torch.device("cpu"),
                 items: np.ndarray | None = None, rules: ItemRules | None = None) -> None:
        self.model, self.device, self.rules = model, device, rules
        self.n_items = model.n_items
        self.items = None if items is None else np.asarray(items, dtype=np.int64)
        self.col_map = _col_map(self.items, self.n_items)

    def topn(self, users, n, mask_rows, mask_cols):
        block = np.asarray(self.model.score_users(np.asarray(users, np.int64)), np.float32)
        if self.items is not None:
            block = block[:, self.items]
        scores = torch.from_numpy(np.ascontiguousarray(block)).to(self.device)
        return cut(scores, n, mask_rows, mask_cols, self.items, self.rules)


class RerankScorer:
    """Top-``M`` candidates from a factorized scorer, re-ranked by ``model.score``.

    Both models must share the item index space (the candidate scorer already masks seen and
    unavailable items, so the re-ranked list inherits those filters).
    """

    def __init__(self, model: Recommender, candidates: FactorizedScorer, m: int,
                 rules: ItemRules | None = None) -> None:
        self.model, self.candidates, self.m, self.rules = model, candidates, m, rules
        self.col_map = candidates.col_map
        self.n_items = candidates.n_items

    def topn(self, users, n, mask_rows, mask_cols):
        users = np.asarray(users, np.int64)
        cand, _ = self.candidates.topn(users, max(self.m, n), mask_rows, mask_cols)
        valid = cand >= 0
        flat_u = np.repeat(users, cand.shape[1])[valid.ravel()]
        scores = np.full(cand.shape, -np.inf, np.float32)
        scores[valid] = self.model.score(flat_u, cand[valid])
        if self.rules is not None:
            return self.rules.top_n(torch.from_numpy(scores), n, items=cand)
        pos, vals = top_n(torch.from_numpy(scores), n)
        items = np.take_along_axis(cand, np.maximum(pos, 0), axis=1)
        return np.where(pos >= 0, items, -1), vals


def _col_map(items: np.ndarray | None, n_items: int) -> np.ndarray | None:
    if items is None:
        return None
    out = np.full(n_items, -1, np.int64)
    out[items] = np.arange(len(items))
    return out


def cut(scores: torch.Tensor, n: int, mask_rows, mask_cols, items: np.ndarray | None,
        rules: ItemRules | None):
    """``top_n``, with the business rules applied first when there are any."""
    if rules is None:
        return top_n(scores, n, mask_rows, mask_cols, items)
    return rules.top_n(scores, n, mask_rows, mask_cols, items)


def make_scorer(model: Recommender, options: ScoreConfig, device: torch.device,
                items: np.ndarray | None = None, candidates: Recommender | None = None,
                rules: ItemRules | None = None):
    """The scorer for ``model``: matrix products when it factorizes, else full or re-ranked.
    ``rules`` (bound to the model's items) are applied before each list is cut."""
    if model.factorized:
        return FactorizedScorer(model.user_vectors(), model.item_vectors(), device, items, rules)
    n_scored = model.n_items if items is None else len(items)
    if n_scored <= options.full_scoring_max_items:
        return FullScorer(model, device, items, rules)
    if candidates is None or not candidates.factorized:
        raise ValueError(
            f"{model.name} does not factorize and the catalog has {n_scored} items "
            f"(> full_scoring_max_items={options.full_scoring_max_items}): "
            "pass a factorized candidate model for re-ranking")
    cand = FactorizedScorer(candidates.user_vectors(), candidates.item_vectors(), device, items)
    return RerankScorer(model, cand, options.candidates_m, rules)
