"""The nightly train and champion/challenger steps, as the jobs call them.

Train: the day's training set minus a held-out slice (each user's latest interaction), one MLflow
run and one registered version per family. Evaluate: the new version (challenger) and the
current ``champion`` are scored on the same held-out slice — translated into each model's own
id space, restricted to users and items both models know — and the gate decides the alias.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from recsys.config import Config
from recsys.data.training_set import TrainingSet, load_training_set
from recsys.evaluate.gate import GateDecision, decide
from recsys.evaluate.protocol import evaluate_model
from recsys.evaluate.splits import leave_last_k_out
from recsys.models.base import FitOptions, Interactions
from recsys.train import run
from recsys.train.device import choose_device

log = logging.getLogger(__name__)


def holdout_split(ts: TrainingSet) -> tuple[Interactions, Interactions]:
    """(train, holdout): each user's latest interaction is held out, when they have two or more."""
    return leave_last_k_out(ts.interactions, k=1)


def train_families(
    cfg: Config, ds: str, families: list[str], epochs: int | None = None, progress: bool = True
) -> list[run.TrainResult]:
    """Train every family in ``families`` on the training set of ``ds``; register each version."""
    ts = load_training_set(cfg.paths.warehouse, ds)
    train, _ = holdout_split(ts)
    device = choose_device(cfg.train.device)
    results = []
    for family in families:
        ckpt = cfg.paths.home / "checkpoints" / ds / family
        options = FitOptions(device=device, seed=cfg.train.seed, epochs=epochs or cfg.train.epochs,
                             checkpoint_dir=ckpt, progress=progress)
        log.info("training %s on %d interactions (%d users x %d items) on %s",
                 family, len(train), train.n_users, train.n_items, device)
        result = run.train_and_log(
            cfg, family, train, ts.user_ids, ts.item_ids, ds=ds, options=options,
            lineage={"ds": ds, "path": str(ts.path), "rows": len(ts.interactions),
                     "train_rows": len(train), "users": train.n_users, "items": train.n_items},
            dq_summary=ts.dq_summary,
        )
        _clear_checkpoints(ckpt)
        results.append(result)
    return results


def _clear_checkpoints(folder: Path) -> None:
    # A finished run must not be "resumed" by the next one for the same ds.
    for f in folder.glob("*"):
        f.unlink()


def _in_model_space(bundle, ts: TrainingSet, data: Interactions, keep_users, keep_items) -> Interactions:
    users = ts.user_ids[data.user_idx]
    items = ts.item_ids[data.item_idx]
    mask = np.isin(users, keep_users) & np.isin(items, keep_items)
    u = bundle.user_index(users[mask])
    i = bundle.item_index(items[mask])
    rating = None if data.rating is None else data.rating[mask]
    return Interactions(user_idx=u, item_idx=i, weight=data.weight[mask], rating=rating,
                        n_users=len(bundle.user_ids), n_items=len(bundle.item_ids))


def compare_on_holdout(cfg: Config, ts: TrainingSet, models: list[run.LoadedModel]) -> list[dict[str, float]]:
    """Metrics of each model on the same held-out slice of ``ts``."""
    train, holdout = holdout_split(ts)
    keep_users = ts.user_ids
    keep_items = ts.item_ids
    for m in models:  # the ids every model knows
        keep_users = np.intersect1d(keep_users, m.bundle.user_ids.astype(str))
        keep_items = np.intersect1d(keep_items, m.bundle.item_ids.astype(str))
    out = []
    for m in models:
        tr = _in_model_space(m.bundle, ts, train, keep_users, keep_items)
        te = _in_model_space(m.bundle, ts, holdout, keep_users, keep_items)
        out.append(evaluate_model(m.model, tr, te, k=cfg.evaluate.k))
    return out


def evaluate_families(cfg: Config, ds: str, families: list[str]) -> dict[str, GateDecision]:
    """Run the champion/challenger gate for each family's version trained for ``ds``."""
    ts = load_training_set(cfg.paths.warehouse, ds)
    decisions = {}
    for family in families:
        version = run.latest_version_for_ds(cfg, family, ds)
        if version is None:
            raise LookupError(f"no version of {family} was trained for ds={ds}; run train first")
        challenger = run.load_version(cfg, family, version)
        champ_version = run.champion_version(cfg, family)
        champion = None
        if champ_version is not None and champ_version != version:
            champion = run.load_version(cfg, family, champ_version)
        models = [challenger] + ([champion] if champion else [])
        metrics = compare_on_holdout(cfg, ts, models)
        decision = decide(metrics[1] if champion else None, metrics[0],
                          metric=cfg.evaluate.metric, tolerance=cfg.evaluate.tolerance)
        run.record_gate(cfg, family, challenger, champion, decision, metrics[0],
                        metrics[1] if champion else None)
        decisions[family] = decision
        log.info("%s v%s vs champion %s: %s", family, version, champ_version, decision.reason)
    return decisions


