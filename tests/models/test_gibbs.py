"""mf_explicit's Gibbs solver (the contract suite covers its SGD solver)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.models import FitOptions, Recommender, build_model
from recsys.models._gibbs import _Link, _Rows, _wishart, gibbs_biased_mf


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


def _low_rank(seed: int = 0):
    """A 60 x 40 rank-2 rating matrix plus noise; half the cells observed, half held out."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 60, 40
    full = 3.0 + rng.normal(0, 1, (n_users, 2)) @ rng.normal(0, 0.7, (2, n_items))
    full += rng.normal(0, 0.1, full.shape)
    u, i = np.divmod(np.arange(n_users * n_items), n_items)
    seen = rng.random(len(u)) < 0.5
    return full[u, i], u, i, seen, n_users, n_items


def _predict(post, u, i):
    return (post["mu"] + post["bu"][u] + post["ci"][i]
            + np.einsum("suk,suk->u", post["P"][:, u], post["Q"][:, i]) / len(post["P"]))


@pytest.mark.parametrize("implicit", [False, True])
def test_sampler_recovers_held_out_cells_of_a_low_rank_matrix(implicit):
    r, u, i, seen, n_users, n_items = _low_rank()
    post = gibbs_biased_mf(u[seen], i[seen], r[seen], n_users, n_items, factors=4, sweeps=60,
                           burn_in=20, keep=10, seed=3, implicit=implicit)
    rmse = np.sqrt(np.mean((_predict(post, u[~seen], i[~seen]) - r[~seen]) ** 2))
    baseline = np.sqrt(np.mean((r[seen].mean() - r[~seen]) ** 2))
    assert rmse < 0.3 * baseline
    assert post["P"].shape == (10, n_users, 4) and post["Q"].shape == (10, n_items, 4)


def test_normal_equations_match_a_loop_over_ratings_duplicates_included():
    rows, cols = np.array([2, 0, 2, 2, 1]), np.array([1, 0, 1, 2, 2])  # (2, 1) twice
    target = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    z = np.array([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]])
    gram, rhs = _Rows(rows, cols, 4, 3).normal_equations(z, target)
    want_gram, want_rhs = np.zeros((4, 2, 2)), np.zeros((4, 2))
    for r, c, t in zip(rows, cols, target):
        want_gram[r] += np.outer(z[c], z[c])
        want_rhs[r] += z[c] * t
    np.testing.assert_allclose(gram, want_gram)
    np.testing.assert_allclose(rhs, want_rhs)  # row 3 has no rating: zeros


@pytest.mark.parametrize("shape", [(5, 9), (9, 5)])  # dual and primal forms
def test_link_solve_matches_a_dense_solve(shape):
    rng = np.random.default_rng(1)
    f = sp.csr_matrix((rng.random(shape) < 0.4) * rng.random(shape))
    b = rng.normal(size=(shape[1], 3))
    dense = f.toarray().T @ f.toarray() + 0.7 * np.eye(shape[1])
    np.testing.assert_allclose(_Link(f).solve(b, 0.7), np.linalg.solve(dense, b), atol=1e-9)


def test_wishart_draws_average_to_dof_times_scale():
    rng = np.random.default_rng(0)
    scale = np.array([[2.0, 0.5], [0.5, 1.0]])
    mean = np.mean([_wishart(scale, 6.0, rng) for _ in range(4000)], axis=0)
    np.testing.assert_allclose(mean, 6.0 * scale, rtol=0.06)


def test_implicit_term_is_skipped_with_a_warning_beyond_its_size_limit(monkeypatch, caplog):
    import recsys.models._gibbs as gibbs

    monkeypatch.setattr(gibbs, "IMPLICIT_MAX_DIM", 10)
    r, u, i, seen, n_users, n_items = _low_rank()
    with caplog.at_level("WARNING"):
        post = gibbs_biased_mf(u[seen], i[seen], r[seen], n_users, n_items, factors=2, sweeps=3,
                               burn_in=1, keep=2, seed=0, implicit=True)
    assert "implicit term skipped" in caplog.text
    assert np.isfinite(post["P"]).all()


def test_burn_in_longer_than_the_run_keeps_the_last_sample():
    r, u, i, seen, n_users, n_items = _low_rank()
    post = gibbs_biased_mf(u[seen], i[seen], r[seen], n_users, n_items, factors=2, sweeps=2,
                           burn_in=5, keep=4, seed=0)
    assert post["P"].shape == (1, n_users, 2) and post["bu"].shape == (n_users,)
