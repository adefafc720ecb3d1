"""Implicit ALS (Hu, Koren & Volinsky 2008) with the refinements of Rendle et al. 2021.

Loss: ``sum_obs c_ui (1 - x_u.y_i)^2 + a0 * sum_all (x_u.y_i)^2 + reg * sum_u r_u |x_u|^2 + ...``
with confidence ``c_ui = 1 + alpha * weight_ui``, unobserved weight ``a0`` and the frequency-scaled
regularization ``r_u = (n_u + a0 * n_items) ** reg_exponent`` (``reg_exponent=0``: plain L2).
Each half step is an exact solve of all rows at once: batched ``torch.linalg.solve`` on blocks.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from recsys.interactions import Interactions
from recsys.model_params import IALSConfig
from recsys.models._validation import validator
from recsys.models.base import FitOptions, Recommender
from recsys.models.loop import fit_epochs

# Outer products materialized per block: nnz_in_block * factors^2 floats stays near this.
_BLOCK_FLOATS = 1 << 22


class _Factors(torch.nn.Module):
    def __init__(self, n_users: int, n_items: int, factors: int) -> None:
        super().__init__()
        self.user = torch.nn.Parameter(torch.zeros(n_users, factors), requires_grad=False)
        self.item = torch.nn.Parameter(torch.zeros(n_items, factors), requires_grad=False)


def _csr_tensors(m: sp.csr_matrix, device: torch.device) -> tuple[torch.Tensor, ...]:
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    to = lambda a, dt: torch.as_tensor(a, dtype=dt, device=device)  # noqa: E731
    return (to(m.indptr, torch.int64), to(m.indices, torch.int64), to(rows, torch.int64),
            to(m.data, torch.float32))


def _half_step(x: torch.Tensor, y: torch.Tensor, csr: tuple[torch.Tensor, ...],
               reg: torch.Tensor, a0: float) -> None:
    """Solve every row of ``x`` in place with ``y`` fixed (``csr`` holds the confidences)."""
    indptr, indices, rows, conf = csr
    f = y.shape[1]
    gram = a0 * (y.T @ y)
    eye = torch.eye(f, device=y.device)
    budget = max(1, _BLOCK_FLOATS // (f * f))
    cuts = torch.searchsorted(indptr, torch.arange(0, int(indptr[-1]), budget, device=y.device))
    bounds = sorted(set(cuts.tolist()) | {0, x.shape[0]})
    for a, b in zip(bounds[:-1], bounds[1:]):
        s, e = int(indptr[a]), int(indptr[b])
        ye, c, local = y[indices[s:e]], conf[s:e], rows[s:e] - a
        lhs = gram.expand(b - a, f, f).clone() + reg[a:b, None, None] * eye
        lhs.index_add_(0, local, (c - a0)[:, None, None] * ye[:, :, None] * ye[:, None, :])
        rhs = torch.zeros(b - a, f, device=y.device).index_add_(0, local, c[:, None] * ye)
        x[a:b] = torch.linalg.solve(lhs, rhs)


class IALS(Recommender):
    """Weighted matrix factorization for implicit feedback, solved by alternating least squares."""

    name = "ials"
    factorized = True

    def __init__(self, config: IALSConfig) -> None:
        super().__init__(config)
        self.module: _Factors | None = None
        self.history: list[dict[str, float]] = []

    def fit(self, train: Interactions, options: FitOptions) -> "IALS":
        self._remember(train)
        cfg, device = self.config, options.device
        torch.manual_seed(options.seed)
        self.module = _Factors(train.n_users, train.n_items, cfg.factors).to(device)
        gen = torch.Generator().manual_seed(options.seed)
        std = cfg.init_std / cfg.factors ** 0.5
        self.module.user.copy_(torch.randn(train.n_users, cfg.factors, generator=gen) * std)
        self.module.item.copy_(torch.randn(train.n_items, cfg.factors, generator=gen) * std)
        by_user = train.csr("weight")
        by_user.data = 1.0 + cfg.alpha * by_user.data
        by_item = by_user.T.tocsr()
        u_csr, i_csr = _csr_tensors(by_user, device), _csr_tensors(by_item, device)
        a0 = cfg.unobserved_weight

        def reg_of(m: sp.csr_matrix) -> torch.Tensor:
            count = np.diff(m.indptr) + a0 * m.shape[1]
            return torch.as_tensor(cfg.reg * count ** cfg.reg_exponent, dtype=torch.float32,
                                   device=device)
        u_reg, i_reg = reg_of(by_user), reg_of(by_item)

        def train_epoch(epoch: int) -> dict[str, float]:
            _half_step(self.module.user, self.module.item, u_csr, u_reg, a0)
            _half_step(self.module.item, self.module.user, i_csr, i_reg, a0)
            return {"samples": float(2 * by_user.nnz)}

        self.history = fit_epochs(
            self.module, None, train_epoch, options.epochs or cfg.epochs, options,
            validate=validator(self, options.validation), monitor="val_ndcg@10",
            patience=cfg.patience,
            fingerprint=f"{self.name}:{train.n_users}x{train.n_items}:{by_user.nnz}",
        )
        return self

    def user_vectors(self) -> np.ndarray:
        self._check_fitted()
        return self.module.user.detach().float().cpu().numpy()

    def item_vectors(self) -> np.ndarray:
        self._check_fitted()
        return self.module.item.detach().float().cpu().numpy()

    def state(self) -> dict[str, Any]:
        return {"module": {k: v.cpu() for k, v in self.module.state_dict().items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        self.module = _Factors(self.n_users, self.n_items, self.config.factors)
        self.module.load_state_dict(state["module"])
