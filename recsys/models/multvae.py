"""Mult-VAE (Liang et al. 2018): a variational autoencoder over each user's item multinomial.

The encoder reads a user's (L2-normalized, dropped-out) interaction row; the decoder outputs a
softmax over all items: through a hidden layer (``decoder: mlp``, Liang et al.) or straight from
the latent code (``decoder: linear``, as RecVAE, Shenbin et al. 2020). The KL term's weight is
either annealed to ``beta_max`` or, with ``gamma > 0``, ``gamma`` times the user's history length
(RecVAE's per-user weight: users with long histories get more regularization). Scoring a user
runs the encoder mean through the decoder, so users are scored from their training history (a
user with none gets the population's taste).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from recsys import distributed
from recsys.interactions import Interactions
from recsys.model_params import MultVAEConfig
from recsys.models._validation import validator
from recsys.models.base import FitOptions, Recommender
from recsys.models.loop import autocast, data_parallel_loss, epoch_generator, fit_epochs


class _VAE(torch.nn.Module):
    def __init__(self, n_items: int, cfg: MultVAEConfig) -> None:
        super().__init__()
        self.drop = torch.nn.Dropout(cfg.dropout)
        self.enc = torch.nn.Linear(n_items, cfg.hidden)
        self.enc_out = torch.nn.Linear(cfg.hidden, 2 * cfg.latent)
        # The mlp decoder keeps its original parameter names, so older saved models still load.
        self.dec = torch.nn.Linear(cfg.latent, cfg.hidden) if cfg.decoder == "mlp" else None
        self.dec_out = torch.nn.Linear(cfg.hidden if cfg.decoder == "mlp" else cfg.latent, n_items)
        self.latent = cfg.latent

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.drop(F.normalize(x, dim=1))
        stats = self.enc_out(torch.tanh(self.enc(h)))
        mu, logvar = stats[:, :self.latent], stats[:, self.latent:]
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        h = z if self.dec is None else torch.tanh(self.dec(z))
        return self.dec_out(h), mu, logvar


def _vae_loss(module: _VAE, x: torch.Tensor, beta: float, gamma: float = 0.0) -> torch.Tensor:
    """One batch's negative ELBO: multinomial log-likelihood plus the weighted KL term.

    The KL weight is ``beta`` for every user, or with ``gamma > 0`` ``gamma`` times each user's
    history length (``x.sum(1)``).
    """
    with autocast(x.device):
        logits, mu, logvar = module(x)
    nll = -(F.log_softmax(logits.float(), dim=1) * x).sum(1)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).float().sum(1)
    weight = gamma * x.sum(1) if gamma > 0 else beta
    return (nll + weight * kl).mean()


def kl_weight(cfg: MultVAEConfig, step: int) -> float:
    """The KL term's weight at optimizer ``step``: linear from 0 to ``beta_max`` over
    ``anneal_steps`` steps, then constant (Liang et al. 2018, section 2.2.2)."""
    return min(cfg.beta_max, cfg.beta_max * step / cfg.anneal_steps)


class MultVAE(Recommender):
    name = "multvae"
    data_parallel = True

    def __init__(self, config: MultVAEConfig) -> None:
        super().__init__(config)
        self.module: _VAE | None = None
        self.history: list[dict[str, float]] = []
        self.device = torch.device("cpu")

    def fit(self, train: Interactions, options: FitOptions) -> "MultVAE":
        self._remember(train)
        cfg, device = self.config, options.device
        self.device = device
        torch.manual_seed(options.seed)
        self.module = _VAE(train.n_items, cfg).to(device)
        opt = torch.optim.Adam(self.module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        step = data_parallel_loss(self.module, _vae_loss, device)
        # The steps run over this rank's share of the users with training rows.
        active = np.flatnonzero(np.diff(self._seen.indptr))
        active = active[distributed.shard(len(active), options.seed)]
        batch = distributed.local_batch(cfg.batch_size)
        per_epoch = -(-len(active) // batch)

        def train_epoch(epoch: int) -> dict[str, float]:
            order = active[torch.randperm(len(active), generator=epoch_generator(options.seed, epoch)).numpy()]
            total = 0.0
            for b, start in enumerate(range(0, len(order), batch)):
                x = self._rows(order[start:start + batch])
                # The step count comes from (epoch, batch), so annealing survives a resume.
                beta = kl_weight(cfg, epoch * per_epoch + b)
                loss = step(x, beta, cfg.gamma)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(x)
            return {"loss": total / len(order), "samples": float(self._seen[order].nnz)}

        self.history = fit_epochs(
            self.module, opt, train_epoch, options.epochs or cfg.epochs, options,
            validate=validator(self, options.validation), monitor="val_ndcg@10",
            patience=cfg.patience, sharded=True,
            fingerprint=f"{self.name}:{train.n_users}x{train.n_items}:{self._seen.nnz}",
        )
        self.module.eval()
        return self

    def _rows(self, users: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(self._seen[users].toarray(), dtype=torch.float32, device=self.device)

    @torch.no_grad()
    def score_users(self, user_idx: np.ndarray) -> np.ndarray:
        self._check_fitted()
        self.module.eval()
        out = []
        for start in range(0, len(user_idx), 1024):
            with autocast(self.device):
                logits, _, _ = self.module(self._rows(np.asarray(user_idx)[start:start + 1024]))
            out.append(F.log_softmax(logits.float(), dim=1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.n_items), np.float32)

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return self._score_pairs_by_user(user_idx, item_idx)

    def state(self) -> dict[str, Any]:
        return {"module": {k: v.cpu() for k, v in self.module.state_dict().items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        if "dec.weight" in state["module"] and self.config.decoder != "mlp":
            # Saved before the decoder option existed: its config lacks the key (now "linear").
            self.config = self.config.model_copy(update={"decoder": "mlp"})
        self.module = _VAE(self.n_items, self.config)
        self.module.load_state_dict(state["module"])
        self.module.eval()
