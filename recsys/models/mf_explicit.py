"""Biased matrix factorization on explicit ratings (Koren et al. 2009), trained on squared error.

``score(u, i) = mu + b_u + b_i + p_u . q_i`` is the predicted rating, so the model also ranks
(by predicted rating) and factorizes: ``[p_u, b_u + mu, 1] . [q_i, 1, b_i]``.

Two solvers: ``gibbs`` (the default; Bayesian biased MF, ``_gibbs.py``: Normal-Wishart
hyperpriors, so no regularization to tune; with ``implicit`` the SVD++-style evidence of which
items a user rated; predictions averaged over posterior samples, which then factorize as the
concatenation of the kept samples' factors) and ``sgd`` (Adam on squared error plus L2, early
stopping on validation RMSE). On MovieLens 100K the gibbs defaults reach a mean RMSE of 0.880
over the official folds u1..u5, about 20 s a fold on 2 cores (Surprise's SVD++: 0.919).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from recsys.interactions import Interactions, TrainingDataError
from recsys.model_params import ExplicitMFConfig
from recsys.models._gibbs import gibbs_biased_mf
from recsys.models.base import FitOptions, Recommender
from recsys.models.loop import autocast, epoch_generator, fit_epochs


class _ExplicitModule(torch.nn.Module):
    def __init__(self, n_users: int, n_items: int, factors: int, std: float) -> None:
        super().__init__()
        self.user = torch.nn.Embedding(n_users, factors)
        self.item = torch.nn.Embedding(n_items, factors)
        self.user_bias = torch.nn.Embedding(n_users, 1)
        self.item_bias = torch.nn.Embedding(n_items, 1)
        self.register_buffer("mu", torch.zeros(()))
        for emb in (self.user, self.item):
            torch.nn.init.normal_(emb.weight, std=std)
        for emb in (self.user_bias, self.item_bias):
            torch.nn.init.zeros_(emb.weight)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        dot = (self.user(u) * self.item(i)).sum(-1)
        return self.mu + self.user_bias(u).squeeze(-1) + self.item_bias(i).squeeze(-1) + dot


def _rated(data: Interactions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if data.rating is None:
        raise TrainingDataError("mf_explicit needs explicit ratings (Interactions.rating)")
    keep = ~np.isnan(data.rating)
    if not keep.any():
        raise TrainingDataError("mf_explicit: no row has a rating")
    return data.user_idx[keep], data.item_idx[keep], data.rating[keep].astype(np.float32)


class ExplicitMF(Recommender):
    """Biased MF on ratings; early stopping on validation RMSE when validation data is given."""

    name = "mf_explicit"
    predicts_ratings = True
    factorized = True

    def __init__(self, config: ExplicitMFConfig) -> None:
        super().__init__(config)
        self.module: _ExplicitModule | None = None
        self.posterior: dict[str, np.ndarray] | None = None
        self.history: list[dict[str, float]] = []

    def fit(self, train: Interactions, options: FitOptions) -> "ExplicitMF":
        self._remember(train)
        if self.config.solver == "gibbs":
            return self._fit_gibbs(train, options)
        cfg, device = self.config, options.device
        u_np, i_np, r_np = _rated(train)
        torch.manual_seed(options.seed)
        self.module = _ExplicitModule(train.n_users, train.n_items, cfg.factors, cfg.init_std)
        self.module.mu.fill_(float(r_np.mean()))
        self.module.to(device)
        opt = torch.optim.Adam(self.module.parameters(), lr=cfg.lr)
        users, items = torch.from_numpy(u_np).to(device), torch.from_numpy(i_np).to(device)
        ratings, n = torch.from_numpy(r_np).to(device), len(u_np)

        def train_epoch(epoch: int) -> dict[str, float]:
            order = torch.randperm(n, generator=epoch_generator(options.seed, epoch)).to(device)
            total = torch.zeros((), device=device)
            for start in range(0, n, cfg.batch_size):
                idx = order[start:start + cfg.batch_size]
                u, i, r = users[idx], items[idx], ratings[idx]
                with autocast(device):
                    err = self.module(u, i).float() - r
                    m = self.module
                    reg = (m.user(u).pow(2).sum(-1) + m.item(i).pow(2).sum(-1)
                           + m.user_bias(u).squeeze(-1).pow(2) + m.item_bias(i).squeeze(-1).pow(2))
                    loss = (err.pow(2) + cfg.reg * reg).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += err.detach().pow(2).sum()
            return {"loss": float(total) / n, "train_rmse": float(total / n) ** 0.5,
                    "samples": float(n)}

        self.history = fit_epochs(
            self.module, opt, train_epoch, options.epochs or cfg.epochs, options,
            validate=self._validator(options.validation), monitor="val_neg_rmse",
            patience=cfg.patience, fingerprint=f"{self.name}:{train.n_users}x{train.n_items}:{n}",
        )
        self.module.eval()
        return self

    def _fit_gibbs(self, train: Interactions, options: FitOptions) -> "ExplicitMF":
        cfg = self.config
        u, i, r = _rated(train)
        t0 = time.perf_counter()
        self.posterior = gibbs_biased_mf(u, i, r, train.n_users, train.n_items, cfg.factors,
                                         cfg.sweeps, cfg.burn_in, cfg.keep, options.seed,
                                         implicit=cfg.implicit)
        seconds = time.perf_counter() - t0
        metrics = {"sweeps": float(cfg.sweeps), "samples": float(len(r) * cfg.sweeps),
                   "epoch_seconds": seconds, "samples_per_second": len(r) * cfg.sweeps / seconds}
        self.history = [metrics]
        if options.on_epoch is not None:
            options.on_epoch(0, metrics)
        return self

    def _validator(self, held_out: Interactions | None):
        if held_out is None or held_out.rating is None or np.isnan(held_out.rating).all():
            return None
        u, i, r = _rated(held_out)

        def validate() -> dict[str, float]:
            rmse = float(np.sqrt(np.mean((self.score(u, i) - r) ** 2)))
            return {"val_rmse": rmse, "val_neg_rmse": -rmse}
        return validate

    def _vectors(self) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        if self.posterior is not None:
            post = self.posterior
            k = len(post["P"])  # mean over samples of p.q == concat(p / k) . concat(q)
            p = np.concatenate(list(post["P"] / k), axis=1)
            q = np.concatenate(list(post["Q"]), axis=1)
            bu = (post["bu"] + post["mu"])[:, None].astype(np.float32)
            bi = post["ci"][:, None].astype(np.float32)
            return (np.hstack([p, bu, np.ones_like(bu)]), np.hstack([q, np.ones_like(bi), bi]))
        m = self.module
        with torch.no_grad():
            p, q = m.user.weight.float().cpu().numpy(), m.item.weight.float().cpu().numpy()
            bu = m.user_bias.weight.float().cpu().numpy() + float(m.mu)
            bi = m.item_bias.weight.float().cpu().numpy()
        return (np.hstack([p, bu, np.ones_like(bu)]),
                np.hstack([q, np.ones_like(bi), bi]))

    def user_vectors(self) -> np.ndarray:
        return self._vectors()[0]

    def item_vectors(self) -> np.ndarray:
        return self._vectors()[1]

    def state(self) -> dict[str, Any]:
        if self.posterior is not None:
            return {"posterior": self.posterior}
        return {"module": {k: v.cpu() for k, v in self.module.state_dict().items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        if "posterior" in state:
            self.posterior = state["posterior"]
            return
        cfg = self.config
        self.module = _ExplicitModule(self.n_users, self.n_items, cfg.factors, cfg.init_std)
        self.module.load_state_dict(state["module"])
        self.module.eval()
