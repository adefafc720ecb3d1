"""Bayesian biased matrix factorization by Gibbs sampling (Salakhutdinov & Mnih 2008, as libFM's MCMC).

``r_ui ~ N(mu + b_u + c_i + p_u . q_i, 1 / alpha)``; per side, a zero-mean Gaussian prior on
``[p, b]`` with one precision per dimension, Gamma(1, 1) hyperpriors on those precisions and on
``alpha``. Each sweep samples every user vector given the items, then every item vector given
the users, fully vectorized: per-row normal equations are summed with ``np.add.reduceat`` and
solved as one batched Cholesky. Predictions average the kept samples, which is what removes the
need to tune regularization (the priors adapt to the data).
"""
from __future__ import annotations

import numpy as np


def _sample_side(rows: np.ndarray, cols: np.ndarray, target: np.ndarray, other: np.ndarray,
                 n: int, lam: np.ndarray, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` vectors ``x`` from their conditional given ``target ~ x_row . [other_col, 1]``."""
    order = np.argsort(rows, kind="stable")
    rows, cols, target = rows[order], cols[order], target[order]
    z = np.hstack([other, np.ones((len(other), 1))])[cols]
    d = z.shape[1]
    counts = np.bincount(rows, minlength=n)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    has = counts > 0
    gram, rhs = np.zeros((n, d, d)), np.zeros((n, d))
    if has.any():
        gram[has] = np.add.reduceat(z[:, :, None] * z[:, None, :], starts[has], axis=0)
        rhs[has] = np.add.reduceat(z * target[:, None], starts[has], axis=0)
    precision = alpha * gram + np.diag(lam)[None]
    chol = np.linalg.cholesky(precision)
    mean = np.linalg.solve(precision, alpha * rhs[:, :, None])[:, :, 0]
    # mean + L^-T eps has covariance precision^-1
    noise = np.linalg.solve(np.swapaxes(chol, 1, 2), rng.standard_normal((n, d, 1)))[:, :, 0]
    return mean + noise


def gibbs_biased_mf(user_idx: np.ndarray, item_idx: np.ndarray, rating: np.ndarray,
                    n_users: int, n_items: int, factors: int, sweeps: int, burn_in: int,
                    keep: int, seed: int) -> dict[str, np.ndarray]:
    """Run the sampler; returns ``mu``, mean biases and the kept factor samples.

    ``P``: (kept, n_users, factors), ``Q``: (kept, n_items, factors); the posterior-mean
    prediction is ``mu + bu + ci + mean_s(P[s] . Q[s])``.
    """
    rng = np.random.default_rng(seed)
    r = rating.astype(np.float64)
    mu = float(r.mean())
    p = rng.normal(0, 0.1, (n_users, factors))
    q = rng.normal(0, 0.1, (n_items, factors))
    bu, ci = np.zeros(n_users), np.zeros(n_items)
    lam_u, lam_i, alpha = np.ones(factors + 1), np.ones(factors + 1), 2.0
    stride = max(1, -(-(sweeps - burn_in) // keep))
    kept_p, kept_q, sum_bu, sum_ci, n_avg = [], [], np.zeros(n_users), np.zeros(n_items), 0
    for sweep in range(sweeps):
        x = _sample_side(user_idx, item_idx, r - mu - ci[item_idx], q, n_users, lam_u, alpha, rng)
        p, bu = x[:, :factors], x[:, factors]
        y = _sample_side(item_idx, user_idx, r - mu - bu[user_idx], p, n_items, lam_i, alpha, rng)
        q, ci = y[:, :factors], y[:, factors]
        lam_u = rng.gamma(1.0 + n_users / 2, 1.0 / (1.0 + 0.5 * (x ** 2).sum(0)))
        lam_i = rng.gamma(1.0 + n_items / 2, 1.0 / (1.0 + 0.5 * (y ** 2).sum(0)))
        res = r - (mu + bu[user_idx] + ci[item_idx] + (p[user_idx] * q[item_idx]).sum(1))
        alpha = rng.gamma(1.0 + len(r) / 2, 1.0 / (1.0 + 0.5 * (res ** 2).sum()))
        if sweep >= burn_in:
            sum_bu += bu
            sum_ci += ci
            n_avg += 1
            if (sweep - burn_in) % stride == 0:
                kept_p.append(p.copy())
                kept_q.append(q.copy())
    n_avg = max(n_avg, 1)
    if not kept_p:  # sweeps <= burn_in: the last sample stands in for the posterior
        kept_p, kept_q, sum_bu, sum_ci = [p], [q], bu, ci
    return {"mu": np.float64(mu), "bu": sum_bu / n_avg, "ci": sum_ci / n_avg,
            "P": np.stack(kept_p).astype(np.float32), "Q": np.stack(kept_q).astype(np.float32)}
