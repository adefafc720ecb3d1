"""mf_explicit's implicit term: which items a user rated is evidence about its ratings."""
from __future__ import annotations

import numpy as np
import pytest

from recsys.models import FitOptions, Interactions, Recommender, build_model

SIGNAL, TARGETS, PER_GROUP, HELD_PER_GROUP = 8, 4, 20, 5


def _groups() -> tuple[Interactions, Interactions]:
    """Two user groups; each rates its own 'signal' items at random (values carry no information).

    Group 0 rates the first target items 5 and the others 1, group 1 the reverse (so both groups
    have the same mean rating). The last users of each group have their target ratings held out:
    only *which* signal items they rated tells their group.
    """
    rng = np.random.default_rng(0)
    rows, held = [], []
    for u in range(2 * PER_GROUP):
        g = u % 2
        rows += [(u, g * SIGNAL + k, float(rng.integers(1, 6))) for k in range(SIGNAL)]
        targets = [(u, 2 * SIGNAL + t, 5.0 if (t < TARGETS // 2) == (g == 0) else 1.0)
                   for t in range(TARGETS)]
        (held if u >= 2 * (PER_GROUP - HELD_PER_GROUP) else rows).extend(targets)

    def interactions(part):
        u, i, r = (np.array(c) for c in zip(*part))
        return Interactions(user_idx=u.astype(np.int64), item_idx=i.astype(np.int64),
                            weight=np.ones(len(u), np.float32), n_users=2 * PER_GROUP,
                            n_items=2 * SIGNAL + TARGETS, rating=r.astype(np.float32))
    return interactions(rows), interactions(held)


def _held_out_rmse(implicit: bool, seed: int = 5) -> tuple[float, Recommender]:
    train, held = _groups()
    model = build_model("mf_explicit", {"factors": 3, "sweeps": 60, "burn_in": 20,
                                        "implicit": implicit}).fit(train, FitOptions(seed=seed))
    err = model.score(held.user_idx, held.item_idx) - held.rating
    return float(np.sqrt(np.mean(err ** 2))), model


def test_implicit_term_predicts_users_whose_rated_values_say_nothing():
    with_implicit, _ = _held_out_rmse(True)
    without, _ = _held_out_rmse(False)
    assert without > 1.5  # ratings alone cannot tell the held-out users' group (5 vs 1)
    assert with_implicit < 0.5 * without


def test_implicit_model_round_trips_through_save(tmp_path):
    _, model = _held_out_rmse(True)
    train, held = _groups()
    model.save(tmp_path / "m.pt")
    loaded = Recommender.load(tmp_path / "m.pt")
    np.testing.assert_allclose(loaded.score(held.user_idx, held.item_idx),
                               model.score(held.user_idx, held.item_idx), rtol=1e-5)


def test_default_config_samples_with_the_implicit_term():
    assert build_model("mf_explicit", {}).config.implicit is True


@pytest.mark.parametrize("bad", [{"factors": 0}, {"implicit": "maybe"}])
def test_invalid_gibbs_config_is_refused(bad):
    with pytest.raises(ValueError):
        build_model("mf_explicit", bad)
