"""Implicit ALS (Hu, Koren & Volinsky 2008) with the refinements of Rendle et al. 2021.

Loss: ``sum_obs c_ui (1 - x_u.y_i)^2 + a0 * sum_unobs (x_u.y_i)^2 + reg * sum_u r_u |x_u|^2 + ...``
with confidence ``c_ui = 1 + alpha * weight_ui``, unobserved weight ``a0`` and the frequency-scaled
regularization ``r_u = (n_u + a0 * n_items) ** reg_exponent`` (``reg_exponent=0``: plain L2).

Each half step solves every row's normal equations
``(a0 Y'Y + sum_i (c_ui - a0) y_i y_i' + reg r_u I) x_u = sum_i c_ui y_i`` with ``Y'Y`` computed
once. ``cg_steps > 0`` (the default, as in ``implicit``): that many conjugate-gradient steps, for
all rows at once, warm-started from the current factors; one step costs a few passes over the
nonzeros (``nnz * factors``), never the ``nnz * factors^2`` of forming each row's matrix.
``cg_steps = 0``: exact batched solves (``torch.linalg.solve`` on the formed matrices).
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from recsys.interactions import Interactions
from recsys.model_params import IALSConfig
from recsys.models._validation import validator
from recsys.models.base import FitOptions, Recommender
from recsys.models.loop import fit_epochs

# Per block: the exact solver materializes nnz * factors^2 floats of outer products, about this
# many; the CG solver holds a few nnz-long vectors and block_rows x factors matrices.
_EXACT_BLOCK_FLOATS = 1 << 22
_CG_BLOCK_NNZ = 1 << 24


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


def _blocks(indptr: torch.Tensor, n_rows: int, budget: int) -> list[tuple[int, int]]:
    """Row ranges ``[a, b)`` holding about ``budget`` nonzeros each (a heavy row alone may exceed)."""
    nnz = int(indptr[-1])
    cuts = torch.searchsorted(indptr, torch.arange(0, max(nnz, 1), max(budget, 1),
                                                   device=indptr.device))
    bounds = sorted(set(cuts.tolist()) | {0, n_rows})
    return list(zip(bounds[:-1], bounds[1:]))


def _exact_block(gram: torch.Tensor, reg: torch.Tensor, ye: torch.Tensor, w: torch.Tensor,
                 local: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Form every row's matrix (``nnz * f^2`` floats) and solve it exactly."""
    n, f = rhs.shape
    lhs = gram.expand(n, f, f).clone()
    lhs.diagonal(dim1=1, dim2=2).add_(reg[:, None])
    lhs.index_add_(0, local, w[:, None, None] * ye[:, :, None] * ye[:, None, :])
    return torch.linalg.solve(lhs, rhs)


def _csr(indptr: torch.Tensor, indices: torch.Tensor, values: torch.Tensor, n_cols: int
         ) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(indptr, indices, values, (len(indptr) - 1, n_cols),
                                       check_invariants=False)


def _cg_block(x: torch.Tensor, y: torch.Tensor, gram: torch.Tensor, reg: torch.Tensor,
              pattern: torch.Tensor, w: torch.Tensor, rhs: torch.Tensor, steps: int
              ) -> torch.Tensor:
    """``steps`` conjugate-gradient steps on every row at once, from ``x`` (implicit's solver).

    ``pattern`` is the block's CSR matrix; ``A p = p (a0 Y'Y) + reg p + W (p Y')|nnz Y``, where
    the sampled product ``(p Y')|nnz`` (only at the nonzeros, ``sampled_addmm``) and the sparse
    product with ``Y`` cost ``nnz * factors`` each.
    """
    y_t = y.T

    def matvec(p: torch.Tensor) -> torch.Tensor:
        dots = torch.sparse.sampled_addmm(pattern, p, y_t, beta=0.0)
        weighted = _csr(dots.crow_indices(), dots.col_indices(), dots.values() * w, y.shape[0])
        return torch.addmm(reg[:, None] * p, p, gram).add_(weighted @ y)

    r = rhs - matvec(x)
    p = r.clone()
    rs = (r * r).sum(1)
    tiny = torch.finfo(x.dtype).tiny
    for step in range(steps):
        ap = matvec(p)
        step_size = rs / (p * ap).sum(1).clamp_min(tiny)
        x = x.addcmul(step_size[:, None], p)
        if step == steps - 1:
            break
        r = r.addcmul(step_size[:, None], ap, value=-1.0)
        rs_new = (r * r).sum(1)
        p = r.addcmul((rs_new / rs.clamp_min(tiny))[:, None], p)
        rs = rs_new
    return x


def _half_step(x: torch.Tensor, y: torch.Tensor, csr: tuple[torch.Tensor, ...],
               reg: torch.Tensor, a0: float, cg_steps: int) -> None:
    """Solve every row of ``x`` in place with ``y`` fixed (``csr`` holds the confidences)."""
    indptr, indices, rows, conf = csr
    f = y.shape[1]
    gram = a0 * (y.T @ y)
    budget = _CG_BLOCK_NNZ if cg_steps else _EXACT_BLOCK_FLOATS // (f * f)
    for a, b in _blocks(indptr, x.shape[0], budget):
        s, e = int(indptr[a]), int(indptr[b])
        c = conf[s:e]
        if cg_steps:
            block_ptr = indptr[a:b + 1] - s
            rhs = _csr(block_ptr, indices[s:e], c, y.shape[0]) @ y
            pattern = _csr(block_ptr, indices[s:e], torch.ones_like(c), y.shape[0])
            x[a:b] = _cg_block(x[a:b], y, gram, reg[a:b], pattern, c - a0, rhs, cg_steps)
        else:
            ye, local = y[indices[s:e]], rows[s:e] - a
            rhs = torch.zeros(b - a, f, device=y.device, dtype=y.dtype).index_add_(
                0, local, c[:, None] * ye)
            x[a:b] = _exact_block(gram, reg[a:b], ye, c - a0, local, rhs)


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
            _half_step(self.module.user, self.module.item, u_csr, u_reg, a0, cfg.cg_steps)
            _half_step(self.module.item, self.module.user, i_csr, i_reg, a0, cfg.cg_steps)
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
