"""mf_explicit's Gibbs solver (the contract suite covers its SGD solver)."""
from __future__ import annotations

import numpy as np

from recsys.models import FitOptions, Recommender, build_model


def test_gibbs_predicts_liked_block_above_other_blocks(explicit_blocks, tmp_path):
    train, held = explicit_blocks
    model = build_model("mf_explicit", {"factors": 4, "sweeps": 60, "burn_in": 10}).fit(
        train, FitOptions(seed=7))
    users = np.arange(train.n_users)
    liked = model.score(users, held)  # the user's own block: every rating there is 5
    other = model.score(users, (held + 6) % train.n_items)  # next block: ratings of 1 or none
    assert liked.mean() > other.mean() + 1.0
    assert np.sqrt(np.mean((model.score(train.user_idx, train.item_idx) - train.rating) ** 2)) < 0.5
    model.save(tmp_path / "m.pt")
    np.testing.assert_allclose(Recommender.load(tmp_path / "m.pt").score(users, held), liked,
                               rtol=1e-5)
