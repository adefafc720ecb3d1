"""Tiny training sets and fitted models for the scoring tests."""
from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest

from recsys.models import FitOptions, Interactions, build_model
from recsys.models.bundle import ModelBundle
from recsys.score._sink import Provenance

GENERATED_AT = dt.datetime(2024, 3, 2, 4, 0, tzinfo=dt.timezone.utc)
PROV = Provenance("recsys_mf_bpr", "3", "run123", GENERATED_AT)


@dataclasses.dataclass
class Data:
    """Stands in for recsys.data.training_set.TrainingSet."""

    interactions: Interactions
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_available: np.ndarray | None = None


def make_data(n_users=12, n_items=9, per_user=3, seed=0, available=None) -> Data:
    rng = np.random.default_rng(seed)
    u = np.repeat(np.arange(n_users), per_user)
    i = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    inter = Interactions(user_idx=u.astype(np.int64), item_idx=i.astype(np.int64),
                         weight=np.ones(len(u), np.float32), n_users=n_users, n_items=n_items)
    # Ids deliberately not in index order, so sorting by id is visible.
    users = np.array([f"u{(7 * k) % n_users:02d}" for k in range(n_users)])
    items = np.array([f"i{k:02d}" for k in range(n_items)])
    return Data(inter, users, items, available)


def fit_bundle(data: Data, epochs=2) -> ModelBundle:
    model = build_model("mf_bpr", {"factors": 4, "epochs": epochs, "batch_size": 64})
    model.fit(data.interactions, FitOptions(seed=1))
    return ModelBundle(model, data.user_ids.copy(), data.item_ids.copy())


@pytest.fixture()
def data() -> Data:
    return make_data()


@pytest.fixture()
def bundle(data) -> ModelBundle:
    return fit_bundle(data)
