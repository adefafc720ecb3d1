"""Neural matrix factorization, NeuMF (He et al. 2017): a GMF and an MLP branch fused linearly.

Trained pointwise with binary cross-entropy on every observed pair plus ``negatives`` unseen items
per pair, as in the paper. The fitted weights are the mean of the weights at the end of each of the
last ``average_last`` epochs (stochastic weight averaging, Izmailov et al. 2018): the single last
epoch's ranking quality swings with its draws of negatives, the average does not. Not factorized:
scoring all items runs the network on blocks.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from recsys import distributed
from recsys.interactions import Interactions
from recsys.model_params import NeuMFConfig
from recsys.models._sampling import NegativeSampler
from recsys.models._validation import validator
from recsys.models.base import FitOptions, Recommender
from recsys.models.loop import autocast, data_parallel_loss, epoch_generator, fit_epochs


class _NeuMF(torch.nn.Module):
    def __init__(self, n_users: int, n_items: int, cfg: NeuMFConfig) -> None:
        super().__init__()
        f, mf = cfg.factors, 2 * cfg.factors
        self.gmf_user, self.gmf_item = torch.nn.Embedding(n_users, f), torch.nn.Embedding(n_items, f)
        self.mlp_user, self.mlp_item = torch.nn.Embedding(n_users, mf), torch.nn.Embedding(n_items, mf)
        layers, width = [], 2 * mf
        for out in cfg.mlp_layers:
            layers += [torch.nn.Linear(width, out), torch.nn.ReLU()]
            width = out
        self.mlp = torch.nn.Sequential(*layers)
        self.head = torch.nn.Linear(f + width, 1)
        for emb in (self.gmf_user, self.gmf_item, self.mlp_user, self.mlp_item):
            torch.nn.init.normal_(emb.weight, std=0.01)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        gmf = self.gmf_user(u) * self.gmf_item(i)
        mlp = self.mlp(torch.cat([self.mlp_user(u), self.mlp_item(i)], dim=-1))
        return self.head(torch.cat([gmf, mlp], dim=-1)).squeeze(-1)


class _Averaged(torch.nn.Module):
    """A network and the running mean of its weights over the epochs averaged so far.

    Handed to :func:`fit_epochs` in place of the network, so that the mean and its count are in
    every checkpoint and a resumed run averages exactly what the uninterrupted run would have.
    """

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))
        self._names = {k: "mean_" + k.replace(".", "_") for k in net.state_dict()}
        for key, value in net.state_dict().items():
            self.register_buffer(self._names[key], torch.zeros_like(value, dtype=torch.float32))

    @torch.no_grad()
    def update(self) -> None:
        self.count += 1
        for key, value in self.net.state_dict().items():
            mean = getattr(self, self._names[key])
            mean += (value.float() - mean) / self.count

    def mean_state(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, name).to(v.dtype)
                for (k, name), v in zip(self._names.items(), self.net.state_dict().values())}


def _bce_loss(module: _NeuMF, u: torch.Tensor, i: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One batch's pointwise loss: binary cross-entropy of the logits against 1 (seen) / 0."""
    with autocast(u.device):
        logits = module(u, i)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)


class NeuMF(Recommender):
    name = "neumf"
    data_parallel = True

    def __init__(self, config: NeuMFConfig) -> None:
        super().__init__(config)
        self.module: _NeuMF | None = None
        self.history: list[dict[str, float]] = []
        self.device = torch.device("cpu")

    def fit(self, train: Interactions, options: FitOptions) -> "NeuMF":
        self._remember(train)
        cfg, device = self.config, options.device
        self.device = device
        torch.manual_seed(options.seed)
        self.module = _NeuMF(train.n_users, train.n_items, cfg).to(device)
        opt = torch.optim.Adam(self.module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        step = data_parallel_loss(self.module, _bce_loss, device)
        # Negatives are drawn outside all of the user's items; the steps run over this rank's rows.
        sampler = NegativeSampler(train.user_idx, train.item_idx, train.n_items)
        rows = distributed.shard(len(train), options.seed)
        users_cpu = torch.from_numpy(train.user_idx[rows])
        items_cpu = torch.from_numpy(train.item_idx[rows])
        neg, batch = cfg.negatives, distributed.local_batch(cfg.batch_size)
        epochs = options.epochs or cfg.epochs
        averaged = _Averaged(self.module) if cfg.average_last > 0 else None
        average_from = epochs - cfg.average_last

        def train_epoch(epoch: int) -> dict[str, float]:
            gen = epoch_generator(options.seed, epoch)
            negs = sampler.sample(users_cpu, gen, neg)  # (n, neg)
            u = torch.cat([users_cpu, users_cpu.repeat_interleave(neg)])
            i = torch.cat([items_cpu, negs.reshape(-1)])
            y = torch.cat([torch.ones(len(users_cpu)), torch.zeros(negs.numel())])
            order = torch.randperm(len(u), generator=gen)
            u, i, y = u[order].to(device), i[order].to(device), y[order].to(device)
            total = torch.zeros((), device=device)
            for start in range(0, len(u), batch):
                sl = slice(start, start + batch)
                loss = step(u[sl], i[sl], y[sl])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach() * len(y[sl])
            if averaged is not None and epoch >= average_from:
                averaged.update()
            return {"loss": float(total) / len(u), "samples": float(len(u))}

        fingerprint = f"{self.name}:{train.n_users}x{train.n_items}:{len(train)}"
        self.history = fit_epochs(
            self.module if averaged is None else averaged, opt, train_epoch, epochs, options,
            validate=validator(self, options.validation), monitor="val_ndcg@10",
            patience=cfg.patience, sharded=True,
            fingerprint=fingerprint if averaged is None else f"{fingerprint}:average",
        )
        # With validation, fit_epochs restored the best epoch's state, the mean's included: the
        # mean up to that epoch, or, when it came before the averaged epochs, its own weights.
        if averaged is not None and int(averaged.count) > 0:
            self.module.load_state_dict(averaged.mean_state())
        self.module.eval()
        return self

    @torch.no_grad()
    def score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        self._check_fitted()
        self.module.eval()
        u = torch.as_tensor(np.asarray(user_idx), dtype=torch.int64)
        i = torch.as_tensor(np.asarray(item_idx), dtype=torch.int64)
        out = []
        for start in range(0, len(u), 1 << 18):  # bounded activations per block
            sl = slice(start, start + (1 << 18))
            with autocast(self.device):
                out.append(self.module(u[sl].to(self.device), i[sl].to(self.device)).float().cpu())
        return (torch.cat(out) if out else torch.zeros(0)).numpy().astype(np.float32)

    def state(self) -> dict[str, Any]:
        return {"module": {k: v.cpu() for k, v in self.module.state_dict().items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        self.module = _NeuMF(self.n_users, self.n_items, self.config)
        self.module.load_state_dict(state["module"])
        self.module.eval()
