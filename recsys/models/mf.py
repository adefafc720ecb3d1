"""Matrix factorization trained with BPR (Rendle et al. 2009) on implicit feedback."""
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
              weight_decay: float) -> torch.Tensor:
    """One batch's BPR loss (positive i over negative j) plus L2 on the rows it touched."""
    with autocast(u.device):
        diff = module(u, i) - module(u, j)
        reg = (module.user(u).pow(2).sum() + module.item(i).pow(2).sum()
               + module.item(j).pow(2).sum()) / len(u)
        return -torch.nn.functional.logsigmoid(diff).mean() + weight_decay * reg


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
        opt = torch.optim.Adam(self.module.parameters(), lr=cfg.lr)
        step = data_parallel_loss(self.module, _bpr_loss, device)
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
            total = torch.zeros((), device=device)
            for start in range(0, n, batch):
                idx = order[start:start + batch]
                loss = step(users[idx], items[idx], negs[start:start + batch], cfg.weight_decay)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach().float() * len(idx)  # no per-batch device sync
            return {"loss": float(total) / n, "samples": float(n)}

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
