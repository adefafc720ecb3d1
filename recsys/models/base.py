"""The model contract every recommender follows, baselines included.

``fit(train, options) -> self``; ``score(user_idx, item_idx) -> scores``;
``recommend(user_idx, n, exclude_seen=True) -> (items, scores)``; and, for models that factorize,
``user_vectors()`` / ``item_vectors()`` so that scoring all users is a blocked matrix product.
"""
from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from recsys.interactions import Interactions
from recsys.models import _safe
from recsys.models._safe import UnsafeModelFile  # noqa: F401  (re-exported)


def top_n(scores: torch.Tensor, n: int, mask_rows: np.ndarray | None = None,
          mask_cols: np.ndarray | None = None, items: np.ndarray | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """The best ``n`` columns of each row of ``scores``, best first: (int64 items, float32 scores).

    The one top-N primitive (the contract's ``recommend`` and the batch scorers both use it).
    Masked cells are set to -inf in place first; ``items`` maps column positions to item indices.
    Where fewer than ``n`` items remain (masked, -inf, or a small catalog) the tail holds item -1
    and score -inf.
    """
    if mask_rows is not None and len(mask_rows):
        rows = torch.from_numpy(mask_rows).to(scores.device, non_blocking=True)
        cols = torch.from_numpy(mask_cols).to(scores.device, non_blocking=True)
        scores[rows, cols] = -torch.inf
    vals, idx = torch.topk(scores, min(n, scores.shape[1]), dim=1, sorted=True)
    vals = vals.float().cpu().numpy()
    idx = idx.cpu().numpy().astype(np.int64)
    if items is not None:
        idx = items[idx]
    idx[np.isneginf(vals)] = -1
    if idx.shape[1] < n:
        pad = n - idx.shape[1]
        idx = np.pad(idx, ((0, 0), (0, pad)), constant_values=-1)
        vals = np.pad(vals, ((0, 0), (0, pad)), constant_values=-np.inf)
    return idx, vals.astype(np.float32, copy=False)


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """How to train: chosen once at the edge and passed down. Models never probe for a GPU."""

    device: torch.device = torch.device("cpu")
    seed: int = 42
    epochs: int | None = None  # overrides the model config's epochs when set
    # Called after every epoch with (epoch, metrics); the caller (train/run.py) logs them.
    on_epoch: Callable[[int, dict[str, float]], None] | None = None
    # Where per-epoch checkpoints go; training resumes from the newest one found there.
    checkpoint_dir: Path | None = None
    # Held-out interactions for early stopping on a ranking metric (optional).
    validation: Interactions | None = None
    progress: bool = False
    # A live SparkSession for the distributed families (als_spark); they build one when absent.
    spark: Any = None


class Recommender(abc.ABC):
    """Base class of every model family."""

    #: registry name, e.g. "mf_bpr"
    name: ClassVar[str]
    #: True when score(u, i) = user_vectors()[u] @ item_vectors()[i] (+ nothing else)
    factorized: ClassVar[bool] = False
    #: True when score(u, i) predicts the explicit rating (evaluated with RMSE/MAE too)
    predicts_ratings: ClassVar[bool] = False
    #: True when fit() trains data-parallel under a process group (recsys.distributed): each rank
    #: steps over its shard through loop.data_parallel_loss. Other families train on rank 0 alone.
    data_parallel: ClassVar[bool] = False

    def __init__(self, config: Any) -> None:
        self.config = config
        self._seen: sp.csr_matrix | None = None
        self.n_users = 0
        self.n_items = 0

    # -- training ---------------------------------------------------------------------------
    @abc.abstractmethod
    def fit(self, train: Interactions, options: FitOptions) -> "Recommender":
        """Train on ``train``; must call ``self._remember(train)``. Returns self."""

    def _remember(self, train: Interactions) -> None:
        train.check_trainable()
        self.n_users, self.n_items = train.n_users, train.n_items
        self._seen = train.csr("ones")

    # -- inference ----------------------------------------------------------------------------
    def score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Scores for the (user, item) pairs, float32, same length as the inputs.

        Factorized models get this for free (a row-wise dot product of their vectors); every
        other family overrides it.
        """
        if not self.factorized:
            raise NotImplementedError(f"{type(self).__name__} must implement score()")
        u, i = self.user_vectors(), self.item_vectors()
        return np.einsum("nf,nf->n", u[user_idx], i[item_idx]).astype(np.float32)

    def score_users(self, user_idx: np.ndarray) -> np.ndarray:
        """Dense (len(user_idx), n_items) score block. Factorized models use a matrix product."""
        if self.factorized:
            u = self.user_vectors()[user_idx]
            return (u @ self.item_vectors().T).astype(np.float32)
        users = np.repeat(np.asarray(user_idx), self.n_items)
        items = np.tile(np.arange(self.n_items), len(user_idx))
        return self.score(users, items).reshape(len(user_idx), self.n_items)

    def recommend(
        self, user_idx: np.ndarray, n: int, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items and scores per user, best first; seen items excluded by default.

        Returns int64 (len(user_idx), n) items and float32 scores; where fewer than ``n`` items
        remain, the tail holds item -1 and score -inf.
        """
        user_idx = np.asarray(user_idx, dtype=np.int64)
        scores = torch.from_numpy(np.ascontiguousarray(self.score_users(user_idx), dtype=np.float32))
        rows = cols = None
        if exclude_seen and self._seen is not None:
            seen = self._seen[user_idx].tocoo()
            rows, cols = seen.row.astype(np.int64), seen.col.astype(np.int64)
        return top_n(scores, n, rows, cols)

    @staticmethod
    def _score_pairs_sparse(rows, weights: np.ndarray, user_idx: np.ndarray, item_idx: np.ndarray,
                            chunk: int = 65536) -> np.ndarray:
        """``rows[u] @ weights[:, i]`` for each (u, i) pair, from the nonzeros of ``rows[u]`` only.

        For models whose scores are a sparse row (a user's history, maybe with feature columns)
        times a dense matrix: the work is the history length per pair, not the catalog size, so
        re-ranking 200 candidates of a 20k-item catalog costs what 200 items cost
        (:func:`_score_pairs_by_user` computed the whole row of every user first).
        """
        user_idx, item_idx = np.asarray(user_idx, np.int64), np.asarray(item_idx, np.int64)
        out = np.zeros(len(user_idx), dtype=np.float64)
        for start in range(0, len(user_idx), chunk):
            u, i = user_idx[start:start + chunk], item_idx[start:start + chunk]
            block = rows[u].tocoo()
            if block.nnz:
                terms = block.data * weights[block.col, i[block.row]]
                out[start:start + len(u)] = np.bincount(block.row, weights=terms, minlength=len(u))
        return out.astype(np.float32)

    def _score_pairs_by_user(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """``score`` for models that only score whole users: one score block per distinct user."""
        user_idx, item_idx = np.asarray(user_idx, np.int64), np.asarray(item_idx, np.int64)
        out = np.empty(len(user_idx), dtype=np.float32)
        users, inverse = np.unique(user_idx, return_inverse=True)
        for start in range(0, len(users), 1024):  # blocks keep memory at 1024 x n_items
            block = self.score_users(users[start:start + 1024])
            rows = (inverse >= start) & (inverse < start + 1024)
            out[rows] = block[inverse[rows] - start, item_idx[rows]]
        return out

    def _check_fitted(self) -> None:
        if self._seen is None:
            raise RuntimeError(f"{self.name}: call fit() or Recommender.load() first")

    def user_vectors(self) -> np.ndarray:
        raise NotImplementedError(f"{self.name} does not factorize")

    def item_vectors(self) -> np.ndarray:
        raise NotImplementedError(f"{self.name} does not factorize")

    # -- persistence ------------------------------------------------------------------------
    @abc.abstractmethod
    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild the fitted model (tensors/arrays/plain values)."""

    @abc.abstractmethod
    def load_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state`."""

    def save(self, path: Path | str) -> None:
        """Write the fitted model: tensors and plain values only (see :mod:`recsys.models._safe`)."""
        _safe.save(
            {
                "name": self.name,
                "config": self.config.model_dump(mode="json"),
                "n_users": self.n_users,
                "n_items": self.n_items,
                "seen": self._seen,
                "state": self.state(),
            },
            path,
        )

    @classmethod
    def load(cls, path: Path | str) -> "Recommender":
        """Rebuild a model written by :meth:`save`. Nothing in the file is executed: a file that
        holds more than tensors and plain values is refused (:class:`UnsafeModelFile`)."""
        from recsys.models.registry import build_model

        blob = _safe.load(path, map_location="cpu")
        if not isinstance(blob, dict) or not {"name", "config", "state"} <= blob.keys():
            raise _safe.UnsafeModelFile(f"{path} is not a saved recsys model")
        model = build_model(blob["name"], blob["config"])
        model.n_users, model.n_items, model._seen = blob["n_users"], blob["n_items"], blob["seen"]
        model.load_state(blob["state"])
        return model
