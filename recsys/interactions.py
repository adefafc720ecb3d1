"""Interactions (the user x item log every model trains on) and the splits over it.

numpy and scipy only: the data, data-loading, evaluation and publish code that handles
interaction logs never loads torch or Spark.

Splits return ``(train, test)`` in the same index space as the input (same ``n_users`` and
``n_items``), so a model trained on ``train`` can be evaluated on ``test`` directly.

* :func:`stratified_split` — the reference protocol: per user, a seeded shuffle, the first
  ``ratio`` of the rows to train. Matches the Recommenders project's ``python_stratified_split``
  row for row when the rows come in the same order (both its per-user-shuffle version, the
  default, and its later global-draw version).
* :func:`temporal_split` — one global time cut.
* :func:`leave_last_k_out` — each user's last ``k`` rows by time to test.
* :func:`validation_split` — carve a validation set out of a train set (tuning never sees test).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp


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



def _group_positions(user_idx: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by ``order`` (grouped by user): 1-based position within the user, count."""
    users = user_idx[order]
    counts = np.bincount(users, minlength=int(users.max()) + 1 if len(users) else 0)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(len(users)) - starts[users] + 1
    return position, counts[users]


def _split(data: Interactions, train_mask: np.ndarray) -> tuple[Interactions, Interactions]:
    return data.subset(train_mask), data.subset(~train_mask)


def stratified_split(
    data: Interactions,
    ratio: float = 0.75,
    seed: int = 42,
    min_train: int = 1,
    shuffle: str = "per_user",
) -> tuple[Interactions, Interactions]:
    """Per-user random split: the first ``ratio`` of each user's shuffled rows go to train.

    ``shuffle="per_user"`` is the reference protocol (Recommenders' ``python_stratified_split``
    as of its published MovieLens benchmark): each user's rows, in input order, are shuffled by
    ``pandas.DataFrame.sample(frac=1, random_state=seed)`` (a ``RandomState(seed)`` permutation
    of the user's row count) and the first ``round(ratio * n)`` go to train.
    ``shuffle="global"`` is the later Recommenders variant: one ``RandomState(seed).rand`` draw
    over all rows, rows sorted by (user, draw), a row trains when position / n <= ratio.
    Either way every user keeps at least ``min_train`` rows in train.
    """
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1); got {ratio}")
    if shuffle == "per_user":
        order, to_train = _per_user_shuffle(data.user_idx, ratio, seed)
    elif shuffle == "global":
        # The legacy global RNG stream, as Recommenders uses it, so the rows match theirs.
        rand = np.random.RandomState(seed).rand(len(data))
        order = np.lexsort((rand, data.user_idx))
        position, count = _group_positions(data.user_idx, order)
        to_train = position / count <= ratio
    else:
        raise ValueError(f"unknown shuffle {shuffle!r}; use 'per_user' or 'global'")
    position, _ = _group_positions(data.user_idx, order)
    mask = np.zeros(len(data), dtype=bool)
    mask[order] = to_train | (position <= min_train)
    return _split(data, mask)


def _per_user_shuffle(user_idx: np.ndarray, ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows grouped by user (input order kept) and whether each goes to train.

    The same-seeded permutation depends only on the user's row count, so one permutation per
    distinct count serves every user of that size.
    """
    order = np.argsort(user_idx, kind="stable")
    position, count = _group_positions(user_idx, order)
    to_train = np.zeros(len(order), dtype=bool)
    for n in np.unique(count):
        rows = count == n
        shuffled_at = np.argsort(np.random.RandomState(seed).permutation(n))
        cut = round(ratio * n)  # Python's round, as Recommenders' np.split index used it
        to_train[rows] = shuffled_at[position[rows] - 1] < cut
    return order, to_train


def temporal_split(
    data: Interactions,
    ratio: float = 0.75,
    cut_ts: int | None = None,
    drop_cold_users: bool = True,
) -> tuple[Interactions, Interactions]:
    """Global time cut: rows before the cut train, rows at or after it test.

    The cut is ``cut_ts`` when given, else the timestamp below which ``ratio`` of the rows fall.
    With ``drop_cold_users`` test rows of users absent from train are dropped (full-ranking
    metrics cannot rank for a user the model has never seen).
    """
    if data.ts is None:
        raise ValueError("temporal_split needs timestamps (data.ts is None)")
    if cut_ts is None:
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"ratio must be in (0, 1); got {ratio}")
        cut_ts = int(np.quantile(data.ts, ratio, method="higher"))
    train_mask = data.ts < cut_ts
    train, test = _split(data, train_mask)
    if drop_cold_users:
        warm = np.zeros(data.n_users, dtype=bool)
        warm[train.user_idx] = True
        test = test.subset(warm[test.user_idx])
    return train, test


def leave_last_k_out(
    data: Interactions, k: int = 1, min_train: int = 1, seed: int | None = None
) -> tuple[Interactions, Interactions]:
    """Each user's last ``k`` rows by timestamp go to test, the rest to train.

    Ties in time keep the input order, or a random order drawn from ``seed`` when given. A user
    with fewer than ``k + min_train`` rows gives only what leaves ``min_train`` rows in train.
    Without timestamps the input order stands in for time.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    ts = data.ts if data.ts is not None else np.arange(len(data))
    tie = (np.arange(len(data)) if seed is None
           else np.random.default_rng(seed).permutation(len(data)))
    order = np.lexsort((tie, ts, data.user_idx))
    position, count = _group_positions(data.user_idx, order)
    from_end = count - position  # 0 for the user's last row
    to_train = (from_end >= k) | (position <= min_train)
    mask = np.zeros(len(data), dtype=bool)
    mask[order] = to_train
    return _split(data, mask)


def validation_split(
    train: Interactions, fraction: float = 0.1, seed: int = 42, method: str = "stratified"
) -> tuple[Interactions, Interactions]:
    """Carve ``(fit, validation)`` out of a train set, for tuning and early stopping only.

    ``method`` is ``"stratified"`` (per-user random, ``fraction`` of each user's rows) or
    ``"last"`` (each user's last row by time).
    """
    if method == "stratified":
        return stratified_split(train, ratio=1.0 - fraction, seed=seed)
    if method == "last":
        return leave_last_k_out(train, k=1, seed=seed)
    raise ValueError(f"unknown validation method {method!r}; use 'stratified' or 'last'")
