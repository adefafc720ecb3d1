"""Bayesian biased matrix factorization by Gibbs sampling (BPMF, Salakhutdinov & Mnih 2008).

``r_ui ~ N(mu + b_u + c_i + p_u . q_i, 1 / alpha)``. Per side the augmented vectors
``x_u = [p_u, b_u]`` (users) and ``y_i = [q_i, c_i]`` (items) have a Gaussian prior with a full
precision matrix and a mean under a Normal-Wishart hyperprior; ``alpha`` has a Gamma(1, 1) one.
With ``implicit`` the prior mean of a user also depends on *which* items the user rated (and an
item's on which users rated it): ``x_u ~ N(mu_U + beta_U' f_u, Lambda_U^-1)`` with ``f_u`` the
user's row of the binary rated matrix scaled by ``|N(u)|^-1/2``: SVD++'s implicit term, and its
"flipped" item-side twin, sampled as Macau does (Simm et al. 2017) so that every conditional stays
Gaussian. Only the training rows define ``f``.

Every sweep is a handful of vectorized operations: the per-row normal equations are two sparse x
dense products, and all rows are solved by one batched Cholesky (torch.linalg). The implicit
link costs one dense eigendecomposition per side up front, then small products per sweep.
Predictions average the kept samples; with the hyperpriors, that is what removes the need to tune
regularization (the priors adapt to the data).
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)

# The implicit link solves a dense min(n_rows, n_features)^2 eigenproblem once per side.
IMPLICIT_MAX_DIM = 4000


class _Rows:
    """One side's ratings as a sparse ``rows x other`` matrix, for the per-row normal equations.

    ``gram_u = sum_i z_i z_i'`` over the row's ratings is one sparse x dense product with the
    other side's flattened outer products; ``rhs_u = sum_i z_i t_ui`` one more with the targets
    as the sparse values. No per-rating d x d array is ever built.
    """

    def __init__(self, rows: np.ndarray, cols: np.ndarray, n: int, n_other: int) -> None:
        self.order = np.argsort(rows, kind="stable")
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
        # Built from its parts so that duplicate (row, col) pairs stay separate ratings.
        self.matrix = sp.csr_matrix((np.ones(len(rows)), cols[self.order], indptr),
                                    shape=(n, n_other))

    def normal_equations(self, z: np.ndarray, target: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
        """``(gram, rhs)`` per row; ``z``: the other side's rows, ``target``: one per rating."""
        d = z.shape[1]
        outer = (z[:, :, None] * z[:, None, :]).reshape(len(z), d * d)
        gram = (self.matrix @ outer).reshape(-1, d, d)
        self.matrix.data = target[self.order]
        rhs = self.matrix @ z
        self.matrix.data = np.ones(len(self.order))
        return gram, rhs


class _Link:
    """``beta`` of ``x ~ N(mu + F beta, Lambda^-1)``: solves ``(F'F + lam I) b`` in O(size^2 d).

    One eigendecomposition of the smaller of ``F'F`` and ``FF'`` at construction; the dual
    (Woodbury) form is used when there are fewer rows than features.
    """

    def __init__(self, features: sp.csr_matrix) -> None:
        self.f = features.tocsr().astype(np.float64)
        self.ft = self.f.T.tocsr()
        self.dual = self.f.shape[0] < self.f.shape[1]
        small = (self.f @ self.ft) if self.dual else (self.ft @ self.f)
        s, v = np.linalg.eigh(small.toarray())
        self.s, self.v = np.clip(s, 0, None), v

    def solve(self, b: np.ndarray, lam: float) -> np.ndarray:
        """``(F'F + lam I)^-1 b`` for ``b`` of shape (n_features, d)."""
        if not self.dual:
            return self.v @ ((self.v.T @ b) / (self.s + lam)[:, None])
        inner = self.v @ ((self.v.T @ (self.f @ b)) / (self.s + lam)[:, None])
        return (b - self.ft @ inner) / lam

    def sample(self, centred: np.ndarray, chol_cov: np.ndarray, lam: float,
               rng: np.random.Generator) -> np.ndarray:
        """A draw of ``beta`` given ``centred = x - mu`` (n_rows, d) and ``cov = Lambda^-1``."""
        n, m = self.f.shape
        d = centred.shape[1]
        # F'(x - mu + e1) + sqrt(lam) e2 with e ~ N(0, cov) has covariance (F'F + lam I) x cov.
        e1 = rng.standard_normal((n, d)) @ chol_cov.T
        e2 = rng.standard_normal((m, d)) @ chol_cov.T
        return self.solve(self.ft @ (centred + e1) + np.sqrt(lam) * e2, lam)

    def mean(self, beta: np.ndarray) -> np.ndarray:
        return self.f @ beta


def _implicit_features(rows: np.ndarray, cols: np.ndarray, n: int, m: int) -> sp.csr_matrix:
    """Binary ``rows x cols`` matrix of who rated what, each row scaled by ``count^-1/2``."""
    f = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, m))
    f.data[:] = 1.0  # duplicates count once
    counts = np.diff(f.indptr)
    return sp.diags(1.0 / np.sqrt(np.maximum(counts, 1))) @ f


def _wishart(scale: np.ndarray, dof: float, rng: np.random.Generator) -> np.ndarray:
    """A draw from Wishart(scale, dof) by the Bartlett decomposition."""
    d = len(scale)
    chol = np.linalg.cholesky(scale)
    a = np.tril(rng.standard_normal((d, d)), -1)
    a[np.diag_indices(d)] = np.sqrt(rng.chisquare(dof - np.arange(d)))
    la = chol @ a
    return la @ la.T


@dataclasses.dataclass
class _Prior:
    """One side's hyperparameters: mean, precision, and the implicit link (if any)."""

    mu: np.ndarray
    lam: np.ndarray
    link: _Link | None = None
    beta: np.ndarray | None = None
    lam_beta: float = 1.0

    def row_means(self, n: int) -> np.ndarray:
        base = np.broadcast_to(self.mu, (n, len(self.mu)))
        return base + self.link.mean(self.beta) if self.link is not None else base

    def resample(self, x: np.ndarray, rng: np.random.Generator) -> None:
        """Gibbs step for (mu, Lambda), then beta and its precision scale, given the vectors x."""
        n, d = x.shape
        resid = x - self.link.mean(self.beta) if self.link is not None else x
        mean = resid.mean(0)
        centred = resid - mean
        # Normal-Wishart(mu0 = 0, b0 = 2, W0 = I, nu0 = d) posterior, as in BPMF.
        b0, nu = 2.0, d + n
        w_inv = np.eye(d) + centred.T @ centred + (b0 * n / (b0 + n)) * np.outer(mean, mean)
        if self.link is not None:  # beta's rows ~ N(0, (lam_beta Lambda)^-1) share Lambda
            w_inv += self.lam_beta * self.beta.T @ self.beta
            nu += self.beta.shape[0]
        self.lam = _wishart(np.linalg.inv(_sym(w_inv)), nu, rng)
        cov_mu = np.linalg.inv(_sym((b0 + n) * self.lam))
        self.mu = rng.multivariate_normal(n * mean / (b0 + n), _sym(cov_mu))
        if self.link is None:
            return
        chol_cov = np.linalg.cholesky(_sym(np.linalg.inv(self.lam)))
        self.beta = self.link.sample(x - self.mu, chol_cov, self.lam_beta, rng)
        m = self.beta.shape[0]
        quad = float(np.einsum("ij,jk,ik->", self.beta, self.lam, self.beta))
        self.lam_beta = rng.gamma(1.0 + m * d / 2, 1.0 / (1.0 + quad / 2))


def _sym(a: np.ndarray) -> np.ndarray:
    return (a + a.T) / 2


def _draw_rows(gram: np.ndarray, rhs: np.ndarray, prior: _Prior, alpha: float,
               rng: np.random.Generator) -> np.ndarray:
    """Every row's vector from its Gaussian conditional, by one batched Cholesky."""
    n, d = rhs.shape
    precision = torch.from_numpy(alpha * gram + prior.lam)
    b = torch.from_numpy(alpha * rhs + prior.row_means(n) @ prior.lam)
    chol = torch.linalg.cholesky(precision)
    eps = torch.from_numpy(rng.standard_normal((n, d, 1)))
    # mean + L^-T eps = L^-T (L^-1 b + eps); L^-T eps has covariance precision^-1.
    half = torch.linalg.solve_triangular(chol, b.unsqueeze(-1), upper=False) + eps
    return torch.linalg.solve_triangular(chol.mT, half, upper=True).squeeze(-1).numpy()


def _with_ones(v: np.ndarray, factors: int) -> np.ndarray:
    """``[factors of v, 1]``: the regressors the other side's vectors see."""
    return np.hstack([v[:, :factors], np.ones((len(v), 1))])


def _link(rows, cols, n, m, implicit: bool) -> _Link | None:
    if not implicit:
        return None
    if min(n, m) > IMPLICIT_MAX_DIM:
        log.warning("implicit term skipped: min(%d, %d) > %d rows/features", n, m,
                    IMPLICIT_MAX_DIM)
        return None
    return _Link(_implicit_features(rows, cols, n, m))


def gibbs_biased_mf(user_idx: np.ndarray, item_idx: np.ndarray, rating: np.ndarray,
                    n_users: int, n_items: int, factors: int, sweeps: int, burn_in: int,
                    keep: int, seed: int, implicit: bool = False) -> dict[str, np.ndarray]:
    """Run the sampler; returns ``mu``, mean biases and the kept factor samples.

    ``P``: (kept, n_users, factors), ``Q``: (kept, n_items, factors); the posterior-mean
    prediction is ``mu + bu + ci + mean_s(P[s] . Q[s])``. BLAS runs single-threaded here: every
    dense product is small, and multithreaded OpenBLAS was 3x slower on a shared 2-core machine.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _run(user_idx, item_idx, rating, n_users, n_items, factors, sweeps, burn_in,
                    keep, seed, implicit)


class _Average:
    """Running posterior mean of the biases, and every ``stride``-th factor sample kept."""

    def __init__(self, factors: int, stride: int) -> None:
        self.factors, self.stride = factors, stride
        self.p: list[np.ndarray] = []
        self.q: list[np.ndarray] = []
        self.bu = self.ci = 0.0
        self.n = 0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        k = self.factors
        if self.n % self.stride == 0:
            self.p.append(x[:, :k].copy())
            self.q.append(y[:, :k].copy())
        self.bu, self.ci, self.n = self.bu + x[:, k], self.ci + y[:, k], self.n + 1

    def result(self, mu: float) -> dict[str, np.ndarray]:
        return {"mu": np.float64(mu), "bu": self.bu / self.n, "ci": self.ci / self.n,
                "P": np.stack(self.p).astype(np.float32),
                "Q": np.stack(self.q).astype(np.float32)}


def _prior(rows, cols, n, m, d, implicit: bool) -> _Prior:
    link = _link(rows, cols, n, m, implicit)
    return _Prior(np.zeros(d), np.eye(d), link, None if link is None else np.zeros((m, d)))


def _run(user_idx, item_idx, rating, n_users, n_items, factors, sweeps, burn_in, keep, seed,
         implicit) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    r = rating.astype(np.float64)
    mu = float(r.mean())
    d = factors + 1
    by_user = _Rows(user_idx, item_idx, n_users, n_items)
    by_item = _Rows(item_idx, user_idx, n_items, n_users)
    users = _prior(user_idx, item_idx, n_users, n_items, d, implicit)
    items = _prior(item_idx, user_idx, n_items, n_users, d, implicit)
    x = np.hstack([rng.normal(0, 0.1, (n_users, factors)), np.zeros((n_users, 1))])
    y = np.hstack([rng.normal(0, 0.1, (n_items, factors)), np.zeros((n_items, 1))])
    alpha = 2.0
    # sweeps <= burn_in: the last sample stands in for the posterior
    burn_in = min(burn_in, sweeps - 1)
    average = _Average(factors, max(1, -(-(sweeps - burn_in) // keep)))
    for sweep in range(sweeps):
        # x = [p, b_u] fits r - mu - c_i against [q_i, 1]; y = [q, c_i] likewise.
        users.resample(x, rng)
        gram, rhs = by_user.normal_equations(_with_ones(y, factors), r - mu - y[item_idx, factors])
        x = _draw_rows(gram, rhs, users, alpha, rng)
        items.resample(y, rng)
        gram, rhs = by_item.normal_equations(_with_ones(x, factors), r - mu - x[user_idx, factors])
        y = _draw_rows(gram, rhs, items, alpha, rng)
        pred = mu + np.einsum("ij,ij->i", x[user_idx], _with_ones(y, factors)[item_idx])
        sse = float(((r - pred - y[item_idx, factors]) ** 2).sum())
        alpha = rng.gamma(1.0 + len(r) / 2, 1.0 / (1.0 + 0.5 * sse))
        if sweep >= burn_in:
            average.add(x, y)
    return average.result(mu)
