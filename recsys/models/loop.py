"""The plain PyTorch epoch loop shared by the neural models. No MLflow in here.

Read it top to bottom: resume from the newest checkpoint, run epochs, evaluate on the validation
set when one is given, keep the best weights (early stopping), checkpoint every epoch, and hand
each epoch's metrics to the caller's ``on_epoch`` callback.

Data-parallel (one rank of N, :mod:`recsys.distributed`): each rank's ``train_epoch`` runs over
its own shard and takes its steps through :func:`data_parallel_loss` (DDP all-reduces the
gradients); the loop sums the ranks' samples and losses, validates on rank 0 and hands its result
to every rank (so all ranks stop early together), and only rank 0 writes checkpoints, which every
rank resumes from.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import time
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from recsys import distributed
from recsys.models import _safe
from recsys.models.base import FitOptions

CHECKPOINT = "checkpoint.pt"
log = logging.getLogger(__name__)


def autocast(device: torch.device):
    """Mixed precision on CUDA (bfloat16: no loss scaling needed); a no-op elsewhere."""
    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator for one epoch's shuffling and sampling.

    Derived from (seed, epoch) rather than carried over from the previous epoch, so a run resumed
    from a checkpoint draws exactly the samples the uninterrupted run would have drawn. Each
    rank of a data-parallel run draws its own stream (rank 0's is the single-process one).
    """
    return torch.Generator(device="cpu").manual_seed(
        seed * 1_000_003 + epoch + distributed.rank() * 7_919)


class _Loss(torch.nn.Module):
    """``loss(module, *batch)`` as a module's forward: the one forward DDP sees per step."""

    def __init__(self, module: torch.nn.Module, loss: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.module = module
        self.loss = loss

    def forward(self, *batch: Any) -> torch.Tensor:
        return self.loss(self.module, *batch)


def data_parallel_loss(module: torch.nn.Module, loss: Callable[..., torch.Tensor],
                       device: torch.device) -> Callable[..., torch.Tensor]:
    """``step(*batch) == loss(module, *batch)``; in a data-parallel run, through DDP, so that
    ``step(...).backward()`` leaves the gradient averaged over all ranks in every parameter.

    The whole step's loss is one forward (DDP expects one forward per backward, and gradients of
    anything computed outside it would not be all-reduced). Embedding gradients stay dense: every
    parameter gets a gradient each step, so ``find_unused_parameters`` is not needed; buffers
    (constant features) are not re-broadcast each step.
    """
    if not distributed.is_distributed():
        return lambda *batch: loss(module, *batch)
    from torch.nn.parallel import DistributedDataParallel

    device = torch.device(device)
    return DistributedDataParallel(
        _Loss(module, loss), device_ids=[device] if device.type == "cuda" else None,
        forward_sync_buffers=False)


def _reduce(metrics: dict[str, float]) -> dict[str, float]:
    # Sum the ranks' samples; average their losses weighted by samples.
    samples = float(metrics.get("samples", 0.0))
    loss = float(metrics.get("loss", 0.0))
    total, weighted = distributed.all_reduce_sum([samples, loss * samples])
    out = dict(metrics, samples=total)
    if "loss" in metrics:
        out["loss"] = weighted / max(total, 1e-12)
    return out


def _save_checkpoint(path: Path, payload: dict) -> None:
    # Write then rename, so a kill during the save never leaves a torn checkpoint.
    tmp = path.with_suffix(".tmp")
    _safe.save(payload, tmp)
    tmp.replace(path)


def _load_checkpoint(ckpt: Path | None, device: torch.device, fingerprint: str) -> dict | None:
    if ckpt is None or not ckpt.exists():
        return None
    try:
        # Tensors and plain values only: a checkpoint never runs code when it loads.
        saved = _safe.load(ckpt, map_location=device)
    except _safe.UnsafeModelFile as exc:
        log.warning("ignoring checkpoint: %s", exc)
        return None
    if not isinstance(saved, dict) or saved.get("fingerprint", "") != fingerprint:
        log.warning("ignoring checkpoint %s: it belongs to another model or data set", ckpt)
        return None
    log.info("resuming from %s after epoch %d", ckpt, saved["epoch"])
    return saved


def fit_epochs(
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    train_epoch: Callable[[int], dict[str, float]],
    epochs: int,
    options: FitOptions,
    validate: Callable[[], dict[str, float]] | None = None,
    monitor: str | None = None,
    patience: int = 3,
    fingerprint: str = "",
    sharded: bool = False,
) -> list[dict[str, float]]:
    """Run ``epochs`` epochs of ``train_epoch`` and return the metrics of every epoch.

    ``train_epoch(epoch)`` trains one epoch and returns its metrics (at least ``loss`` and
    ``samples``). With ``validate`` and ``monitor`` (a key of validate's result, higher is better),
    training stops after ``patience`` epochs without improvement and the best weights are restored.
    ``optimizer`` may be None for closed-form steps (ALS). A checkpoint whose ``fingerprint``
    (model name and data shape, say) differs from this run's is ignored, not resumed.
    ``sharded``: ``train_epoch`` trains this rank's shard through :func:`data_parallel_loss`;
    in a data-parallel run the ranks' metrics are combined and rank 0 validates and checkpoints.
    """
    sharded = sharded and distributed.is_distributed()
    main = distributed.is_main()
    history: list[dict[str, float]] = []
    start_epoch, best, best_state, stale = 0, float("-inf"), None, 0
    ckpt = options.checkpoint_dir / CHECKPOINT if options.checkpoint_dir else None
    saved = _load_checkpoint(ckpt, options.device, fingerprint)
    if saved is not None:
        module.load_state_dict(saved["module"])
        if optimizer is not None:
            optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"].cpu())
        start_epoch, history = saved["epoch"] + 1, saved["history"]
        best, best_state, stale = saved["best"], saved["best_state"], saved["stale"]
        if monitor is not None and stale >= patience:  # the killed run had already stopped early
            start_epoch = epochs
    bar = tqdm(range(start_epoch, epochs), desc="train", unit="epoch",
               disable=not (options.progress and main))
    for epoch in bar:
        t0 = time.perf_counter()
        module.train()
        metrics = dict(train_epoch(epoch))
        if sharded:
            metrics = _reduce(metrics)
        seconds = time.perf_counter() - t0
        metrics["epoch_seconds"] = seconds
        metrics["samples_per_second"] = metrics.get("samples", 0.0) / max(seconds, 1e-9)
        if validate is not None and (main or not sharded):
            module.eval()
            with torch.no_grad():
                metrics.update(validate())
        if sharded:  # rank 0's metrics everywhere: every rank keeps the same best, stops together
            metrics = distributed.broadcast(metrics)
        history.append(metrics)
        if options.on_epoch is not None:
            options.on_epoch(epoch, metrics)
        bar.set_postfix(loss=f"{metrics.get('loss', float('nan')):.4f}",
                        sps=f"{metrics['samples_per_second']:.0f}")
        if monitor is not None and monitor in metrics:
            if metrics[monitor] > best:
                best, stale = metrics[monitor], 0
                best_state = copy.deepcopy(module.state_dict())
            else:
                stale += 1
        if ckpt is not None and main:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            _save_checkpoint(ckpt, {
                "epoch": epoch, "module": module.state_dict(), "fingerprint": fingerprint,
                "optimizer": None if optimizer is None else optimizer.state_dict(),
                "rng": torch.get_rng_state(), "history": history, "best": best,
                "best_state": best_state, "stale": stale,
            })
        if monitor is not None and stale >= patience:
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    return history
