"""The evaluate step: the champion/challenger gate.

The new version (challenger) and the current ``champion`` are scored on the same held-out slice —
translated into each model's own id space, restricted to users and items both models know — and
the gate decides the alias. A challenger trained on an older ``ds`` than the champion (a backfill)
is never promoted unless ``force_promote`` (see :func:`recsys.evaluate.gate.decide`).
"""
from __future__ import annotations

import logging

import numpy as np

from recsys import tracking
from recsys.config import Config
from recsys.data.training_set import TrainingSet, holdout_split, load_training_set
from recsys.evaluate.gate import GateDecision, decide
from recsys.evaluate.protocol import evaluate_model
from recsys.interactions import Interactions

log = logging.getLogger(__name__)


def _in_model_space(bundle, ts: TrainingSet, data: Interactions, keep_users, keep_items) -> Interactions:
    users = ts.user_ids[data.user_idx]
    items = ts.item_ids[data.item_idx]
    mask = np.isin(users, keep_users) & np.isin(items, keep_items)
    u = bundle.user_index(users[mask])
    i = bundle.item_index(items[mask])
    rating = None if data.rating is None else data.rating[mask]
    return Interactions(user_idx=u, item_idx=i, weight=data.weight[mask], rating=rating,
                        n_users=len(bundle.user_ids), n_items=len(bundle.item_ids))


def compare_on_holdout(cfg: Config, ts: TrainingSet, models: list[tracking.LoadedModel]) -> list[dict[str, float]]:
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


def evaluate_families(cfg: Config, ds: str, families: list[str],
                      force_promote: bool = False) -> dict[str, GateDecision]:
    """Run the champion/challenger gate for each family's version trained for ``ds``.

    ``force_promote`` lets a challenger trained on older data than the champion be promoted
    (on its metrics); without it such a challenger is never promoted.
    """
    ts = load_training_set(cfg.paths.warehouse, ds)
    decisions = {}
    for family in families:
        version = tracking.latest_version_for_ds(cfg, family, ds)
        if version is None:
            raise LookupError(f"no version of {family} was trained for ds={ds}; run train first")
        challenger = tracking.load_version(cfg, family, version)
        champ_version = tracking.champion_version(cfg, family)
        champion, champ_ds, champ_erased = None, None, False
        if champ_version is not None and champ_version != version:
            champion = tracking.load_version(cfg, family, champ_version)
            champ_info = tracking.version_info(cfg, family, champ_version)
            champ_ds = champ_info.ds if champ_info else None
            # `recsys forget` tagged the champion: a challenger trained without the erased
            # users replaces it (unless it was trained on their data too).
            champ_erased = (tracking.erased_data_pending(cfg, family, champ_version)
                            and not tracking.erased_data_pending(cfg, family, version))
        models = [challenger] + ([champion] if champion else [])
        metrics = compare_on_holdout(cfg, ts, models)
        decision = decide(metrics[1] if champion else None, metrics[0],
                          metric=cfg.evaluate.metric, tolerance=cfg.evaluate.tolerance,
                          champion_ds=champ_ds, challenger_ds=ds, force_promote=force_promote,
                          champion_erased=champ_erased)
        tracking.record_gate(cfg, family, challenger, champion, decision, metrics[0],
                             metrics[1] if champion else None, ds=ds, champion_ds=champ_ds)
        decisions[family] = decision
        log.info("%s v%s (ds=%s) vs champion %s (ds=%s): %s", family, version, ds, champ_version,
                 champ_ds, decision.reason)
    return decisions
