"""Split properties: rows partitioned, every user in train, per-user ratios, determinism."""
import numpy as np
import pandas as pd
import pytest

from recsys.interactions import (
    Interactions,
    leave_last_k_out,
    stratified_split,
    temporal_split,
    validation_split,
)


def _data(counts: list[int], ts: list[int] | None = None) -> Interactions:
    """User u has counts[u] rows on items 0..; ts is a unique row id unless given."""
    users = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
    items = np.concatenate([np.arange(c) for c in counts]).astype(np.int64)
    n = len(users)
    return Interactions(user_idx=users, item_idx=items, weight=np.ones(n, np.float32),
                        n_users=len(counts), n_items=max(counts),
                        ts=np.arange(n, dtype=np.int64) if ts is None else np.asarray(ts))


def _per_user(part: Interactions, n_users: int) -> list[int]:
    return np.bincount(part.user_idx, minlength=n_users).tolist()


def test_stratified_partitions_rows_with_per_user_ratio():
    data = _data([1, 2, 4, 10, 20])
    train, test = stratified_split(data, ratio=0.75, seed=42)
    assert sorted(np.concatenate([train.ts, test.ts]).tolist()) == list(range(len(data)))
    # round(0.75 * n) rows to train (Python's round: 1.5 -> 2, 7.5 -> 8).
    assert _per_user(train, 5) == [1, 2, 3, 8, 15]
    assert _per_user(test, 5) == [0, 0, 1, 2, 5]
    assert (train.n_users, train.n_items) == (data.n_users, data.n_items)


def test_global_shuffle_variant_ratio_and_min_train():
    data = _data([1, 2, 4, 10, 20])
    train, test = stratified_split(data, ratio=0.75, seed=42, shuffle="global")
    # position / count <= 0.75 goes to train; a single-row user keeps its row in train.
    assert _per_user(train, 5) == [1, 1, 3, 7, 15]
    assert _per_user(test, 5) == [0, 1, 1, 3, 5]


def test_stratified_is_deterministic_and_depends_on_the_seed():
    data = _data([20, 20, 20])
    a, _ = stratified_split(data, seed=42)
    b, _ = stratified_split(data, seed=42)
    c, _ = stratified_split(data, seed=7)
    assert a.ts.tolist() == b.ts.tolist()
    assert a.ts.tolist() != c.ts.tolist()


def _random_log(n=600):
    rng = np.random.default_rng(3)
    return rng.integers(0, 30, n), rng.integers(0, 50, n)


def test_stratified_matches_recommenders_per_user_sample_split():
    # The reference procedure written out with pandas as Recommenders' splitter did it: per user
    # (rows in input order) sample(frac=1, random_state=42), the first round(0.75 n) to train.
    users, items = _random_log()
    df = pd.DataFrame({"u": users, "row": np.arange(len(users))})
    expected = sorted(r for _, g in df.groupby("u")
                      for r in g.sample(frac=1, random_state=42)["row"][:round(0.75 * len(g))])
    data = Interactions(user_idx=users.astype(np.int64), item_idx=items.astype(np.int64),
                        weight=np.ones(len(users), np.float32), n_users=30, n_items=50,
                        ts=np.arange(len(users), dtype=np.int64))
    train, _ = stratified_split(data, ratio=0.75, seed=42)
    assert sorted(train.ts.tolist()) == expected


def test_global_variant_matches_recommenders_later_stratified_split():
    # The later Recommenders procedure, written out with pandas as in their splitter.
    users, items = _random_log()
    df = pd.DataFrame({"u": users, "i": items, "row": np.arange(600)})
    np.random.seed(42)
    df["random"] = np.random.rand(len(df))
    df = df.sort_values(["u", "random"])
    g = df.groupby("u")
    df["rank"] = (g.cumcount() + 1) / g["u"].transform("count")
    expected = sorted(df.loc[df["rank"] <= 0.75, "row"])
    data = Interactions(user_idx=users.astype(np.int64), item_idx=items.astype(np.int64),
                        weight=np.ones(600, np.float32), n_users=30, n_items=50,
                        ts=np.arange(600, dtype=np.int64))
    train, _ = stratified_split(data, ratio=0.75, seed=42, min_train=0, shuffle="global")
    assert sorted(train.ts.tolist()) == expected


def test_stratified_rejects_bad_ratio():
    with pytest.raises(ValueError, match="ratio"):
        stratified_split(_data([3]), ratio=1.0)
    with pytest.raises(ValueError, match="shuffle"):
        stratified_split(_data([3]), shuffle="nope")


def test_leave_last_k_out_takes_latest_rows_by_time():
    # User 0 rows at ts 5, 1, 9, 3 -> the last two by time are ts 9 and 5.
    data = _data([4, 1, 2], ts=[5, 1, 9, 3, 7, 4, 8])
    train, test = leave_last_k_out(data, k=2)
    assert sorted(test.ts[test.user_idx == 0].tolist()) == [5, 9]
    # User 1 (one row) keeps it in train; user 2 (two rows) gives one and keeps one.
    assert _per_user(train, 3) == [2, 1, 1]
    assert test.ts[test.user_idx == 2].tolist() == [8]


def test_leave_last_k_out_breaks_time_ties_by_seed():
    data = _data([6], ts=[0] * 6)
    held = {int(leave_last_k_out(data, k=1, seed=s)[1].item_idx[0]) for s in range(20)}
    assert len(held) > 1  # different seeds hold out different tied rows
    a = leave_last_k_out(data, k=1, seed=3)[1].item_idx
    b = leave_last_k_out(data, k=1, seed=3)[1].item_idx
    assert a.tolist() == b.tolist()


def test_temporal_split_is_a_global_cut_and_drops_cold_users():
    # User 2 only appears after the cut.
    data = _data([3, 3, 2], ts=[1, 2, 10, 3, 11, 12, 13, 14])
    train, test = temporal_split(data, cut_ts=10)
    assert train.ts.tolist() == [1, 2, 3]
    assert sorted(test.ts.tolist()) == [10, 11, 12]
    _, with_cold = temporal_split(data, cut_ts=10, drop_cold_users=False)
    assert sorted(with_cold.ts.tolist()) == [10, 11, 12, 13, 14]


def test_temporal_split_by_ratio():
    data = _data([8], ts=list(range(8)))
    train, test = temporal_split(data, ratio=0.75)
    assert train.ts.max() < test.ts.min()
    assert len(train) == 6


def test_validation_split_comes_from_train_only():
    data = _data([20, 20])
    train, test = stratified_split(data)
    fit, valid = validation_split(train, fraction=0.2)
    assert set(valid.ts) <= set(train.ts)
    assert not set(valid.ts) & set(test.ts)
    assert len(fit) + len(valid) == len(train)
    with pytest.raises(ValueError, match="method"):
        validation_split(train, method="nope")
