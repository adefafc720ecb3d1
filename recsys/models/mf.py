"""Matrix factorization trained with BPR (Rendle et al. 2009) on implicit feedback.

Plain SGD on each sampled triple (user u, positive i, negative j), as ``implicit`` and Rendle's
LearnBPR do: with ``x = p_u.(q_i - q_j) + b_i - b_j`` and ``g = sigmoid(-x)``, each triple moves
``p_u += lr (g (q_i - q_j) - reg p_u)``, ``q_i += lr (g p_u - reg q_i)``, ``q_j += lr (-g p_u -
reg q_j)`` and the biases alike (``reg`` is ``weight_decay``). A batch's triples are applied at
once, their updates to a shared row summed (no averaging over the batch).

One process: the update is written out by hand on the rows the batch touched, no autograd, no
optimizer state: users and items share one packed table, and a batch is two ``embedding_bag``
weighted sums of its rows (the dots, then every row's update) and one ``index_add_``
(:class:`_Packed`). Data-parallel: the same update through autograd and ``torch.optim.SGD`` on
the summed loss, with DDP all-reducing the gradients, so ranks step exactly as one process would
on the global batch.
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


# The single-process fit lists the table rows of this many triples at once (13 int64 each).
_TRIPLES_AT_ONCE = 1 << 16


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


class _Packed:
    """The single-process step's table, index and weight buffers, allocated once per fit.

    Users and items live side by side in one ``(n_users + n_items, width)`` table: a user's row
    is ``[p_u, 1, 0...]``, an item's ``[q_i, b_i, 0...]`` (``width``: ``factors + 1`` rounded up
    to 16 floats, so that rows stay 64-byte aligned), hence ``[p_u, 1] . [q_i, b_i] = p_u.q_i +
    b_i``. A batch is two ``embedding_bag`` sums of table rows with per-row weights and one
    ``index_add_``: every update of the step is a weighted sum of the triple's three rows,

    * item i: ``s p_u - d q_i``; user: ``s q_i - d p_u - s q_j``; item j: ``-s p_u - d q_j``

    (``s = lr sigmoid(-x)``, ``d = lr reg``), so the rows are gathered, scaled and summed in one
    pass instead of being copied out and combined by a chain of elementwise ops. The module's
    embeddings are copied in before an epoch and back after it (:meth:`load`, :meth:`store`),
    so checkpoints, validation and the data-parallel path see the module as before.
    """

    def __init__(self, module: _BPRModule, batch: int) -> None:
        user = module.user.weight
        self.n_users, self.factors = user.shape
        self.width = -(-(self.factors + 1) // 16) * 16
        rows = self.n_users + module.item.weight.shape[0]
        dev, dt = user.device, user.dtype
        self.table = torch.zeros(rows, self.width, device=dev, dtype=dt)
        self.batch = batch
        k = torch.arange(batch, device=dev).unsqueeze(1)
        # Dot bags per triple: [u] (weight 1) and [j, i] (weights 1, -1), so that the two rows
        # of a triple are p_u and q_j - q_i and their dot is -x (the biases included).
        self.dot_offsets = (3 * k + torch.tensor([0, 1], device=dev)).view(-1)
        self.dot_weights = torch.tensor([1.0, 1.0, -1.0], device=dev, dtype=dt).repeat(batch)
        # Update bags per triple: item i [u (s), i (-d)], user [i (s), u (-d), j (-s)],
        # item j [j (-d), u (-s)]: rows [u, i, i, u, j, j, u], +-s at every other weight.
        # The sums land on rows [i, u, j].
        self.upd_offsets = (7 * k + torch.tensor([0, 2, 5], device=dev)).view(-1)
        self.upd_weights = torch.empty(batch, 7, device=dev, dtype=dt)
        self.lr_signs = torch.empty(4, device=dev, dtype=dt)  # lr, lr, -lr, -lr
        self.prod = torch.empty(batch, self.width, device=dev, dtype=dt)
        self.step = torch.empty(batch, 1, device=dev, dtype=dt)
        self._rates: tuple[float, float] | None = None
        self._full: tuple[torch.Tensor, ...] | None = None
        self._rows: torch.Tensor | None = None

    def rows(self, u: torch.Tensor, i: torch.Tensor, j: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The table rows that :meth:`sgd` reads for triples ``(u, i, j)`` (``i``, ``j``: item
        indices + ``n_users``), built for many batches at once: (dot rows, 3 per triple;
        update rows, 7 per triple; target rows, 3 per triple). The buffers are kept and reused
        (a fresh few MB each time cost page faults): a call's result is valid until the next."""
        n = len(u)
        if self._rows is None or len(self._rows) < n:
            self._rows = torch.empty(n, 13, dtype=torch.int64, device=u.device)
        flat = self._rows.view(-1)[:13 * n]  # three contiguous blocks: (n, 3), (n, 7), (n, 3)
        dot, upd, add = (flat[:3 * n].view(n, 3), flat[3 * n:10 * n].view(n, 7),
                         flat[10 * n:].view(n, 3))
        torch.stack([u, j, i], 1, out=dot)
        torch.stack([u, i, i, u, j, j, u], 1, out=upd)
        torch.stack([i, u, j], 1, out=add)
        return dot.view(-1), upd.view(-1), add.view(-1)

    @torch.no_grad()
    def load(self, module: _BPRModule) -> None:
        nu, f, t = self.n_users, self.factors, self.table
        t[:nu, :f].copy_(module.user.weight)
        t[:nu, f].fill_(1.0)
        t[nu:, :f].copy_(module.item.weight)
        t[nu:, f:f + 1].copy_(module.item_bias.weight)

    @torch.no_grad()
    def store(self, module: _BPRModule) -> None:
        nu, f, t = self.n_users, self.factors, self.table
        module.user.weight.copy_(t[:nu, :f])
        module.item.weight.copy_(t[nu:, :f])
        module.item_bias.weight.copy_(t[nu:, f:f + 1])

    @torch.no_grad()
    def sgd(self, dot_rows: torch.Tensor, upd_rows: torch.Tensor, add_rows: torch.Tensor,
            lr: float, reg: float, neg_x: torch.Tensor) -> None:
        """One batch of BPR SGD, in place on :attr:`table`, on the rows :meth:`rows` lists for
        its triples; ``-x`` lands in ``neg_x`` (n, 1). Every row is read before any is written;
        repeated rows' updates are summed."""
        n = len(add_rows) // 3
        if n > self.batch:
            raise ValueError(f"a batch of {n} triples does not fit buffers of {self.batch}")
        if (lr, reg) != self._rates:  # -d in the weights that stay, lr as a tensor (no
            self.upd_weights.fill_(-lr * reg)  # scalar wrapping per op and batch)
            self.lr_signs.copy_(torch.tensor([lr, lr, -lr, -lr]))
            self._rates = (lr, reg)
        dot_offsets, dot_weights, upd_offsets, weights, signed, prod, step = self._views(n)
        pair = torch.embedding_bag(self.table, dot_rows, dot_offsets, False, 0, False,
                                   dot_weights)[0].view(n, 2, self.width)
        torch.mul(pair[:, 0], pair[:, 1], out=prod)
        torch.sum(prod, 1, keepdim=True, out=neg_x)
        sig = torch.sigmoid(neg_x, out=step)  # d log sigmoid(x) / dx; s = lr * sig
        torch.mul(sig.expand(n, 4), self.lr_signs, out=signed)  # the +-s weights
        update = torch.embedding_bag(self.table, upd_rows, upd_offsets, False, 0, False,
                                     weights)[0]
        update.view(n, 3, self.width)[:, 1, self.factors].zero_()  # the user's 1 stays 1
        self.table.index_add_(0, add_rows, update)

    def _views(self, n: int) -> tuple[torch.Tensor, ...]:
        """The buffers cut to a batch of ``n`` (cached for the full batch: slicing them anew
        for every batch costs more Python time than some of the ops)."""
        if n == self.batch and self._full is not None:
            return self._full
        weights = self.upd_weights[:n]
        views = (self.dot_offsets[:2 * n], self.dot_weights[:3 * n], self.upd_offsets[:3 * n],
                 weights.view(-1), weights[:, 0:7:2], self.prod[:n], self.step[:n])
        if n == self.batch:
            self._full = views
        return views


@torch.no_grad()
def _sgd_step(module: _BPRModule, u: torch.Tensor, i: torch.Tensor, j: torch.Tensor,
              lr: float, reg: float) -> torch.Tensor:
    """One batch of :meth:`_Packed.sgd` on ``module``, in place; returns the batch's summed
    loss (the ``-log sigmoid`` part). ``fit`` keeps one :class:`_Packed` for the whole run."""
    packed = _Packed(module, len(u))
    packed.load(module)
    neg_x = torch.empty(len(u), 1, device=u.device, dtype=packed.table.dtype)
    packed.sgd(*packed.rows(u, i + packed.n_users, j + packed.n_users), lr, reg, neg_x)
    packed.store(module)
    return torch.nn.functional.softplus(neg_x).sum()


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
            packed = _Packed(self.module, cfg.batch_size)
        # Negatives are drawn outside all of the user's items; the steps run over this rank's rows.
        sampler = NegativeSampler(train.user_idx, train.item_idx, train.n_items)
        rows = distributed.shard(len(train), options.seed)
        users_cpu = torch.from_numpy(train.user_idx[rows])
        users, items = users_cpu.to(device), torch.from_numpy(train.item_idx[rows]).to(device)
        n, batch = len(users), distributed.local_batch(cfg.batch_size)

        def train_epoch(epoch: int) -> dict[str, float]:
            gen = epoch_generator(options.seed, epoch)
            order = torch.randperm(n, generator=gen)
            negs = sampler.sample(users_cpu.index_select(0, order), gen).squeeze(1).to(device)
            order = order.to(device)
            u_all, i_all = users.index_select(0, order), items.index_select(0, order)
            if opt is None:  # items as table rows; -x of every triple into one buffer
                i_all, negs = i_all + train.n_users, negs + train.n_users
                neg_x = torch.empty(n, 1, device=device, dtype=packed.table.dtype)
                packed.load(self.module)
                chunk = batch * max(1, _TRIPLES_AT_ONCE // batch)
                for first in range(0, n, chunk):
                    dot, upd, add = packed.rows(*(t[first:first + chunk]
                                                  for t in (u_all, i_all, negs)))
                    for start in range(0, min(chunk, n - first), batch):
                        end = start + batch
                        packed.sgd(dot[3 * start:3 * end], upd[7 * start:7 * end],
                                   add[3 * start:3 * end], cfg.lr, cfg.weight_decay,
                                   neg_x[first + start:first + end])
                packed.store(self.module)
                loss = float(torch.nn.functional.softplus(neg_x).sum())
                return {"loss": loss / n, "samples": float(n)}
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
