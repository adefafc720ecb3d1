"""The champion/challenger decision."""
import math

import numpy as np
import pytest

from recsys.evaluate.gate import decide
from recsys.evaluate.protocol import evaluate_model
from recsys.interactions import Interactions
from recsys.models.base import FitOptions
from tests.evaluate.eval_fakes import FixedScores


def test_first_run_of_a_family_promotes_unconditionally():
    d = decide(None, {"ndcg@10": 0.01}, "ndcg@10", 0.02)
    assert d.promote and d.champion_value is None and d.challenger_value == 0.01
    assert "first run" in d.reason


@pytest.mark.parametrize("challenger, promote", [
    (0.40, True),    # better
    (0.30, True),    # equal
    (0.285, True),   # worse, but within the tolerance
    (0.27, False),   # worse beyond the tolerance
])
def test_higher_is_better_metric(challenger, promote):
    d = decide({"ndcg@10": 0.30}, {"ndcg@10": challenger}, "ndcg@10", 0.02)
    assert d.promote is promote
    assert (d.champion_value, d.challenger_value) == (0.30, challenger)


def test_rejection_reason_names_both_values():
    d = decide({"ndcg@10": 0.30}, {"ndcg@10": 0.20}, "ndcg@10", 0.02)
    assert "0.2000" in d.reason and "0.3000" in d.reason and "keeping the champion" in d.reason


@pytest.mark.parametrize("challenger, promote", [(0.90, True), (0.91, True), (0.95, False)])
def test_error_metrics_are_lower_is_better(challenger, promote):
    assert decide({"rmse": 0.90}, {"rmse": challenger}, "rmse", 0.02).promote is promote


def test_challenger_without_a_finite_metric_is_not_promoted():
    assert not decide({"ndcg@10": 0.3}, {"ndcg@10": math.nan}, "ndcg@10", 0.02).promote
    assert not decide({"ndcg@10": 0.3}, {"map@10": 0.3}, "ndcg@10", 0.02).promote
    assert not decide(None, {}, "ndcg@10", 0.02).promote


def test_champion_without_the_metric_is_replaced():
    d = decide({"map@10": 0.3}, {"ndcg@10": 0.1}, "ndcg@10", 0.02)
    assert d.promote and d.champion_value is None


def test_negative_tolerance_is_an_error():
    with pytest.raises(ValueError, match="tolerance"):
        decide(None, {"ndcg@10": 0.1}, "ndcg@10", -0.1)


def test_a_deliberately_worse_model_is_not_promoted():
    # Held-out item per user is item u+2; the champion scores it top, the challenger last.
    n_users, n_items = 6, 9
    users = np.arange(n_users, dtype=np.int64)
    train = Interactions(user_idx=users, item_idx=users % 2,  # items 0 and 1
                         weight=np.ones(n_users, np.float32), n_users=n_users, n_items=n_items)
    test = Interactions(user_idx=users, item_idx=users + 2, weight=np.ones(n_users, np.float32),
                        n_users=n_users, n_items=n_items)
    good = np.zeros((n_users, n_items), np.float32)
    good[users, users + 2] = 1.0
    champion = evaluate_model(FixedScores(good).fit(train, FitOptions()), train, test, k=3)
    challenger = evaluate_model(FixedScores(-good).fit(train, FitOptions()), train, test, k=3)
    d = decide(champion, challenger, "ndcg@3", tolerance=0.02)
    assert champion["ndcg@3"] == pytest.approx(1.0) and challenger["ndcg@3"] == 0.0
    assert not d.promote


def test_challenger_trained_on_older_data_never_replaces_a_newer_champion():
    better = decide({"ndcg@10": 0.30}, {"ndcg@10": 0.40}, "ndcg@10", 0.02,
                    champion_ds="2026-03-04", challenger_ds="2026-03-02")
    assert not better.promote and better.challenger_value == 0.40
    assert "older data than the champion (ds=2026-03-04)" in better.reason
    assert "--force-promote" in better.reason
    forced = decide({"ndcg@10": 0.30}, {"ndcg@10": 0.40}, "ndcg@10", 0.02,
                    champion_ds="2026-03-04", challenger_ds="2026-03-02", force_promote=True)
    assert forced.promote and forced.reason.startswith("--force-promote")
    # Forcing lifts only the recency rule: a worse challenger still loses on metrics.
    assert not decide({"ndcg@10": 0.30}, {"ndcg@10": 0.10}, "ndcg@10", 0.02, champion_ds="2026-03-04",
                      challenger_ds="2026-03-02", force_promote=True).promote


@pytest.mark.parametrize("champion_ds, challenger_ds", [
    ("2026-03-02", "2026-03-02"),  # a retrain of the same day
    ("2026-03-01", "2026-03-02"),  # the nightly case
    (None, "2026-03-02"),          # a champion without a ds tag
    ("not a date", "2026-03-02"),
])
def test_recency_rule_applies_only_to_a_known_older_challenger(champion_ds, challenger_ds):
    d = decide({"ndcg@10": 0.30}, {"ndcg@10": 0.40}, "ndcg@10", 0.02,
               champion_ds=champion_ds, challenger_ds=challenger_ds)
    assert d.promote and "older data" not in d.reason
