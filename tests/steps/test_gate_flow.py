"""The nightly champion/challenger flow against a real MLflow registry: a deliberately worse
model is not promoted, and the table published afterwards still names the old champion."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from recsys import io
from recsys import tracking as run
from recsys.config import load_config
from recsys.data.training_set import write_training_set as write_ts
from recsys.interactions import Interactions
from recsys.steps.evaluate import evaluate_families
from recsys.steps.train import train_families

D1, D2 = "2026-02-01", "2026-02-02"


def write_training_set(warehouse, ds, n_groups=3, items_per_group=10, users_per_group=20, seed=0):
    """Users of group g interacted with 7 of the 10 items of group g, in time order."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        for k in range(users_per_group):
            user = g * users_per_group + k
            items = g * items_per_group + rng.choice(items_per_group, 7, replace=False)
            rows += [(user, int(i), 1_700_000_000 + t) for t, i in enumerate(items)]
    u, i, t = map(np.array, zip(*rows))
    n_users, n_items = n_groups * users_per_group, n_groups * items_per_group
    interactions = Interactions(user_idx=u, item_idx=i, weight=np.ones(len(u), np.float32),
                                n_users=n_users, n_items=n_items, ts=t.astype(np.int64))
    write_ts(warehouse, ds, interactions, np.array([f"user{x:03d}" for x in range(n_users)]),
             np.array([f"item{x:03d}" for x in range(n_items)]))


@pytest.mark.slow
def test_worse_challenger_is_not_promoted_and_table_keeps_old_champion(config):
    from recsys.steps.publish import publish_ds
    from recsys.steps.score import score_ds

    wh = config.paths.warehouse
    write_training_set(wh, D1)
    write_training_set(wh, D2)
    small = {"score.model": "mf_bpr", "models.mf_bpr.factors": 8, "models.mf_bpr.batch_size": 256, "score.top_n": 5}

    good = load_config(overrides={**small, "models.mf_bpr.lr": 0.05})
    (v1,) = train_families(good, D1, ["mf_bpr"], epochs=15, progress=False)
    assert evaluate_families(good, D1, ["mf_bpr"])["mf_bpr"].promote

    # Deliberately worse: a learning rate too small to move from the random initialisation.
    bad = load_config(overrides={**small, "models.mf_bpr.lr": 1e-9})
    (v2,) = train_families(bad, D2, ["mf_bpr"], epochs=1, progress=False)
    decision = evaluate_families(bad, D2, ["mf_bpr"])["mf_bpr"]
    assert not decision.promote, decision.reason
    assert decision.champion_value > decision.challenger_value + bad.evaluate.tolerance
    assert run.champion_version(bad, "mf_bpr") == v1.version != v2.version

    score_ds(bad, D2)
    manifest = publish_ds(bad, D2)
    table = pq.read_table(io.partition_path(wh, "recommendations", D2)).to_pandas()
    assert manifest["model_version"] == v1.version
    assert set(table.model_version) == {v1.version}
    assert set(table.mlflow_run_id) == {v1.run_id}
