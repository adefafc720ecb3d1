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


class TrainingDataError(ValueError):
    """The training data cannot train a model (empty, a single user or item, bad indices)."""


@dataclasses.dataclass(frozen=True)
class Interactions:
    """A user x item interaction log with dense integer indices.

    ``weight`` is the implicit confidence; ``rating`` the explicit value where there is one
    (NaN otherwise). Optional side features are dense float32 matrices aligned with the indices.
    """

    user_idx: np.ndarray  # int64, shape (n,)
    item_idx: np.ndarray  # int64, shape (n,)
    weight: np.ndarray  # float32, shape (n,)
    n_users: int
    n_items: int
    rating: np.ndarray | None = None  # float32, shape (n,), NaN where absent
    ts: np.ndarray | None = None  # int64 epoch seconds, shape (n,)
    user_features: np.ndarray | None = None  # float32, (n_users, f_u)
    item_features: np.ndarray | None = None  # float32, (n_items, f_i)

    def __post_init__(self) -> None:
        n = len(self.user_idx)
        if len(self.item_idx) != n or len(self.weight) != n:
            raise TrainingDataError("user_idx, item_idx and weight must have the same length")
        if n and (self.user_idx.min() < 0 or self.user_idx.max() >= self.n_users):
            raise TrainingDataError(f"user_idx outside 0..{self.n_users - 1}")
        if n and (self.item_idx.min() < 0 or self.item_idx.max() >= self.n_items):
            raise TrainingDataError(f"item_idx outside 0..{self.n_items - 1}")

    def __len__(self) -> int:
        return len(self.user_idx)

    def check_trainable(self) -> None:
        """Raise a clear error before training on data that cannot train a model."""
        if len(self) == 0:
            raise TrainingDataError("the training set is empty")
        if len(np.unique(self.user_idx)) < 2:
            raise TrainingDataError("the training set has a single user; need at least two")
        if len(np.unique(self.item_idx)) < 2:
            raise TrainingDataError("the training set has a single item; need at least two")

    def csr(self, values: str = "ones") -> sp.csr_matrix:
        """Sparse user x item matrix; duplicates are summed (``values``: ones|weight|rating)."""
        data = {
            "ones": np.ones(len(self), dtype=np.float32),
            "weight": self.weight.astype(np.float32),
            "rating": None if self.rating is None else self.rating.astype(np.float32),
        }[values]
        if data is None:
            raise TrainingDataError("this data has no explicit ratings")
        m = sp.csr_matrix(
            (data, (self.user_idx, self.item_idx)), shape=(self.n_users, self.n_items)
        )
        m.sum_duplicates()
        return m

    def subset(self, mask: np.ndarray) -> "Interactions":
        """The rows where ``mask`` holds, same index space and features."""
        pick = lambda a: None if a is None else a[mask]  # noqa: E731
        return dataclasses.replace(
            self,
            user_idx=self.user_idx[mask],
            item_idx=self.item_idx[mask],
            weight=self.weight[mask],
            rating=pick(self.rating),
            ts=pick(self.ts),
        )


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
        if exclude_seen and self._seen is not None:
            seen = self._seen[user_idx].tocoo()
            scores[torch.from_numpy(seen.row.astype(np.int64)), torch.from_numpy(seen.col.astype(np.int64))] = -torch.inf
        k = min(n, self.n_items)
        top = torch.topk(scores, k, dim=1)
        items, vals = top.indices.numpy(), top.values.numpy()
        items = np.where(np.isneginf(vals), -1, items)
        if k < n:
            pad = n - k
            items = np.pad(items, ((0, 0), (0, pad)), constant_values=-1)
            vals = np.pad(vals, ((0, 0), (0, pad)), constant_values=-np.inf)
        return items.astype(np.int64), vals.astype(np.float32)

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
        torch.save(
            {
                "name": self.name,
                "config": self.config.model_dump(),
                "n_users": self.n_users,
                "n_items": self.n_items,
                "seen": self._seen,
                "state": self.state(),
            },
            path,
        )

    @classmethod
    def load(cls, path: Path | str) -> "Recommender":
        from recsys.models.registry import build_model

        blob = torch.load(path, map_location="cpu", weights_only=False)
        model = build_model(blob["name"], blob["config"])
        model.n_users, model.n_items, model._seen = blob["n_users"], blob["n_items"], blob["seen"]
        model.load_state(blob["state"])
        return model
