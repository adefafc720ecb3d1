"""evaluate_model (full ranking, seen items excluded) and the sampled-negatives protocol."""
import numpy as np
import pytest

from recsys.evaluate.protocol import evaluate_model, sampled_protocol
from recsys.interactions import Interactions
from recsys.models.base import FitOptions
from tests.evaluate.eval_fakes import FixedScores


def _inter(pairs, n_users=2, n_items=5, rating=None) -> Interactions:
    u, i = np.array(pairs, dtype=np.int64).T
    return Interactions(user_idx=u, item_idx=i, weight=np.ones(len(u), np.float32),
                        n_users=n_users, n_items=n_items,
                        rating=None if rating is None else np.asarray(rating, np.float32))


# Item 4 scores best for everyone, then 3, 2, 1, 0.
SCORES = np.tile(np.arange(5, dtype=np.float32), (2, 1))


def test_evaluate_model_excludes_seen_items_and_averages_over_test_users():
    train = _inter([(0, 4), (1, 0)])
    test = _inter([(0, 3), (1, 1)])
    model = FixedScores(SCORES).fit(train, FitOptions())
    got = evaluate_model(model, train, test, k=2)
    # User 0: 4 is seen -> [3, 2]: hit at rank 1. User 1: [4, 3]: item 1 missed.
    assert got["precision@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert got["recall@2"] == pytest.approx(0.5)
    assert got["ndcg@2"] == pytest.approx(0.5)
    assert got["mrr@2"] == pytest.approx(0.5)
    assert got["coverage@2"] == pytest.approx(3 / 5)  # items 2, 3, 4
    assert got["n_users"] == 2
    assert "rmse" not in got


def test_evaluate_model_skips_users_without_test_rows():
    train = _inter([(0, 4), (1, 0)])
    test = _inter([(0, 3)])
    model = FixedScores(SCORES).fit(train, FitOptions())
    assert evaluate_model(model, train, test, k=1)["precision@1"] == pytest.approx(1.0)


def test_evaluate_model_adds_rmse_for_rating_models():
    class RatingScores(FixedScores):
        predicts_ratings = True

    train = _inter([(0, 4), (1, 0)], rating=[5, 1])
    test = _inter([(0, 3), (1, 1)], rating=[3, 2])
    got = evaluate_model(RatingScores(SCORES).fit(train, FitOptions()), train, test, k=1)
    # Predictions 3 and 1 against 3 and 2.
    assert got["rmse"] == pytest.approx(np.sqrt(0.5))
    assert got["mae"] == pytest.approx(0.5)


def test_sampled_protocol_ranks_the_positive_among_unseen_negatives():
    n_items = 200
    train = _inter([(0, 0), (1, 0), (0, 2)], n_items=n_items)
    test = _inter([(0, 199), (1, 1)], n_items=n_items)
    scores = np.tile(np.arange(n_items, dtype=np.float32), (2, 1))
    model = FixedScores(scores).fit(train, FitOptions())
    got = sampled_protocol(model, train, test, k=10, n_neg=99, seed=0)
    # User 0's positive (item 199) beats every negative; user 1's (item 1) beats none, since
    # item 0 (the only lower one) is in train and never sampled.
    assert got["hr@10"] == pytest.approx(0.5)
    assert got["ndcg@10"] == pytest.approx(0.5)


def test_sampled_negatives_avoid_interacted_items():
    from recsys.evaluate.protocol import _sample_negatives

    seen = _inter([(0, i) for i in range(8)], n_users=1, n_items=10).csr()
    neg = _sample_negatives(seen, np.array([0]), 50, np.random.default_rng(1))
    assert set(neg.ravel()) == {8, 9}
