"""Matrix factorization trained with BPR (Rendle et al. 2009) on implicit feedback.

Plain SGD on each sampled triple (user u, positive i, negative j), as ``implicit`` and Rendle's
LearnBPR do: with ``x = p_u.(q_i - q_j) + b_i - b_j`` and ``g = sigmoid(-x)``, each triple moves
``p_u += lr (g (q_i - q_j) - reg p_u)``, ``q_i += lr (g p_u - reg q_i)``, ``q_j += lr (-g p_u -
reg q_j)`` and the biases alike (``reg`` is ``weight_decay``). A batch's triples are applied at
once, their updates to a shared row summed (no averaging over the batch).

One process: the update is written out by hand on the rows the batch touched (a few vectorized
ops per batch, no autograd, no optimizer state). Data-parallel: the same update through autograd
and ``torch.optim.SGD`` on the summed loss, with DDP all-reducing the gradients, so ranks step
exactly as one process would on the global batch.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from recsys import distributed
from recsys.interactions import Interactions
from recsys.model_params import BPRConfig
from recsys.models._sampling import NegativeSampler
from recsys.models._validation import validator
from recsys.models.base import FitOptions, Recommender
from recsys.models.loop import autocast, data_parallel_loss, epoch_generator, fit_epochs


class _BPRModule(torch.nn.Module):
    def __init__(self, n_users: int, n_items: int, factors: int) -> None:
        super().__init__()
        self.user = torch.nn.Embedding(n_users, factors)
        self.item = torch.nn.Embedding(n_items, factors)
        self.item_bias = torch.nn.Embedding(n_items, 1)
        torch.nn.init.normal_(self.user.weight, std=0.1)
        torch.nn.init.normal_(self.item.weight, std=0.1)
        torch.nn.init.zeros_(self.item_bias.weight)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return (self.user(u) * self.item(i)).sum(-1) + self.item_bias(i).squeeze(-1)


def _bpr_loss(module: _BPRModule, u: torch.Tensor, i: torch.Tensor, j: torch.Tensor,
              reg: float, scale: float) -> torch.Tensor:
    """The batch's summed BPR loss plus ``reg / 2`` x the squared norms of the rows it used.

    ``scale`` (the number of ranks) undoes DDP's gradient averaging: SGD on this loss then takes
    the step :func:`_sgd_step` takes on the global batch.
    """
    with autocast(u.device):
        pu, qi, qj = module.user(u), module.item(i), module.item(j)
        bi, bj = module.item_bias(i).squeeze(-1), module.item_bias(j).squeeze(-1)
        x = (pu * (qi - qj)).sum(-1) + bi - bj
        l2 = (pu.pow(2).sum() + qi.pow(2).sum() + qj.pow(2).sum() + bi.pow(2).sum()
              + bj.pow(2).sum())
        return scale * (torch.nn.functional.softplus(-x).sum() + 0.5 * reg * l2)


class _Workspace:
    """Buffers for :func:`_sgd_step`, allocated once per fit: a fresh megabyte-sized tensor per
    op and batch costs page faults that took longer than the arithmetic itself on a CPU."""

    def __init__(self, batch: int, factors: int, device: torch.device, dtype: torch.dtype) -> None:
        def empty(*shape: int, dt: torch.dtype = dtype) -> torch.Tensor:
            return torch.empty(*shape, device=device, dtype=dt)
        self.batch = batch
        self.ij = empty(2 * batch, dt=torch.int64)
        self.pu, self.diff = empty(batch, factors), empty(batch, factors)
        self.q, self.b, self.x = empty(2 * batch, factors), empty(2 * batch, 1), empty(batch, 1)


@torch.no_grad()
def _sgd_step(module: _BPRModule, u: torch.Tensor, i: torch.Tensor, j: torch.Tensor,
              lr: float, reg: float, work: _Workspace | None = None) -> torch.Tensor:
    """One batch of BPR SGD on the touched rows, in place; returns the batch's summed loss.

    Positives and negatives are gathered and scattered together (one ``index_select`` and one
    ``index_add_`` on the item table, not two), every row is read before any is written, and the
    step sizes are folded into the updates (``index_add_(alpha=...)`` is ~3x slower on a CPU).
    """
    user, item, bias = module.user.weight, module.item.weight, module.item_bias.weight
    n = len(u)
    if work is None or work.batch < n:
        work = _Workspace(n, user.shape[1], user.device, user.dtype)
    ij, pu, diff = work.ij[:2 * n], work.pu[:n], work.diff[:n]
    q, b, x = work.q[:2 * n], work.b[:2 * n], work.x[:n]
    torch.cat([i, j], out=ij)
    torch.index_select(user, 0, u, out=pu)
    torch.index_select(item, 0, ij, out=q)  # rows [positives; negatives]
    torch.index_select(bias, 0, ij, out=b)
    torch.sub(q[:n], q[n:], out=diff)
    torch.bmm(pu.unsqueeze(1), diff.unsqueeze(2), out=x.view(n, 1, 1))
    x.add_(b[:n]).sub_(b[n:])
    loss = torch.nn.functional.softplus(x.neg_()).sum()  # x now holds -x
    step = x.sigmoid_().mul_(lr)  # lr * d log sigmoid(x) / dx
    decay = lr * reg
    user.index_add_(0, u, diff.mul_(step).sub_(pu, alpha=decay))
    pu.mul_(step)
    q.mul_(-decay)
    q[:n].add_(pu)
    q[n:].sub_(pu)
    item.index_add_(0, ij, q)
    b.mul_(-decay)
    b[:n].add_(step)
    b[n:].sub_(step)
    bias.index_add_(0, ij, b)
    return loss


class BPRMF(Recommender):
    """Biased-item MF with the BPR pairwise loss; negatives drawn among the user's unseen items."""

    name = "mf_bpr"
    factorized = True
    data_parallel = True

    def __init__(self, config: BPRConfig) -> None:
        super().__init__(config)
        self.module: _BPRModule | None = None
        self.history: list[dict[str, float]] = []

    def fit(self, train: Interactions, options: FitOptions) -> "BPRMF":
        self._remember(train)
        cfg, device = self.config, options.device
        torch.manual_seed(options.seed)
        self.module = _BPRModule(train.n_users, train.n_items, cfg.factors).to(device)
        if distributed.is_distributed():  # autograd, so that DDP all-reduces the gradients
            opt = torch.optim.SGD(self.module.parameters(), lr=cfg.lr)
            ddp = data_parallel_loss(self.module, _bpr_loss, device)
            scale = float(distributed.world_size())

            def step(u: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
                loss = ddp(u, i, j, cfg.weight_decay, scale)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                return loss.detach() / scale
        else:  # the same update, written out on the touched rows
            opt = None
            work = _Workspace(cfg.batch_size, cfg.factors, torch.device(device),
                              self.module.user.weight.dtype)

            def step(u: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
                return _sgd_step(self.module, u, i, j, cfg.lr, cfg.weight_decay, work)
        # Negatives are drawn outside all of the user's items; the steps run over this rank's rows.
        sampler = NegativeSampler(train.user_idx, train.item_idx, train.n_items)
        rows = distributed.shard(len(train), options.seed)
        users_cpu = torch.from_numpy(train.user_idx[rows])
        users, items = users_cpu.to(device), torch.from_numpy(train.item_idx[rows]).to(device)
        n, batch = len(users), distributed.local_batch(cfg.batch_size)

        def train_epoch(epoch: int) -> dict[str, float]:
            gen = epoch_generator(options.seed, epoch)
            order = torch.randperm(n, generator=gen)
            negs = sampler.sample(users_cpu[order], gen).squeeze(1).to(device)
            order = order.to(device)
            u_all, i_all = users[order], items[order]
            total = torch.zeros((), device=device)
            for start in range(0, n, batch):
                end = start + batch
                total += step(u_all[start:end], i_all[start:end], negs[start:end]).float()
            return {"loss": float(total) / n, "samples": float(n)}  # one device sync per epoch

        self.history = fit_epochs(
            self.module, opt, train_epoch, options.epochs or cfg.epochs, options,
            validate=validator(self, options.validation), monitor="val_ndcg@10",
            patience=cfg.patience, sharded=True,
            fingerprint=f"{self.name}:{train.n_users}x{train.n_items}:{len(train)}",
        )
        self.module.eval()
        return self

    def _vectors(self) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        with torch.no_grad():
            u = self.module.user.weight.float().cpu().numpy()
            i = self.module.item.weight.float().cpu().numpy()
            b = self.module.item_bias.weight.float().cpu().numpy()
        # Fold the item bias into the product: [u, 1] . [i, b].
        return (np.hstack([u, np.ones((len(u), 1), np.float32)]),
                np.hstack([i, b]))

    def user_vectors(self) -> np.ndarray:
        return self._vectors()[0]

    def item_vectors(self) -> np.ndarray:
        return self._vectors()[1]

    def state(self) -> dict[str, Any]:
        return {"module": {k: v.cpu() for k, v in self.module.state_dict().items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        self.module = _BPRModule(self.n_users, self.n_items, self.config.factors)
        self.module.load_state_dict(state["module"])
        self.module.eval()
