"""The one contract every model family passes (tiny block data, CPU, a few epochs)."""
from __future__ import annotations

import numpy as np
import pytest

from recsys.models import FitOptions, Recommender, build_model
from recsys.models.registry import FAMILIES

# Small, fast settings per family; the contract is about behaviour, not tuned quality.
FAST: dict[str, dict] = {
    "mf_bpr": {"factors": 8, "epochs": 50, "batch_size": 64, "lr": 0.02, "weight_decay": 1e-3},
    "mf_explicit": {"solver": "sgd", "factors": 8, "epochs": 60, "batch_size": 32, "lr": 0.05,
                    "reg": 0.01},
    "ials": {"factors": 8, "epochs": 10, "reg": 0.01},
    "neumf": {"factors": 16, "mlp_layers": [16], "epochs": 30, "batch_size": 64, "lr": 0.005,
              "weight_decay": 1e-4},
    "multvae": {"hidden": 32, "latent": 8, "epochs": 60, "batch_size": 16, "lr": 0.02,
                "anneal_steps": 100},
    "two_tower": {"dim": 8, "hidden": 16, "epochs": 30, "batch_size": 32, "negatives": 8},
    "popularity": {},
    "itemknn": {"neighbors": 10, "shrinkage": 1.0},
    "ease": {"l2": 1.0},
    "ease_hybrid": {"l2": 1.0, "item_feature_weight": 0.5, "user_feature_weight": 0.5},
    "ease_ensemble": {"item_side": {"l2": 1.0, "item_feature_weight": 0.5,
                                    "user_feature_weight": 0.5}, "user_l2": 1.0},
    "als_spark": {"factors": 8, "max_iter": 10, "reg": 0.01},
}
FAMILY_PARAMS = [pytest.param(name, marks=pytest.mark.slow) if name == "als_spark" else name
                 for name in sorted(FAMILIES)]


def test_every_family_is_covered():
    assert set(FAST) == set(FAMILIES)


def _data(name, blocks, explicit_blocks):
    return explicit_blocks if name == "mf_explicit" else blocks


def _options(name, request, seed=7) -> FitOptions:
    spark = request.getfixturevalue("spark") if name == "als_spark" else None
    return FitOptions(seed=seed, spark=spark)


@pytest.fixture(scope="module")
def fitted(request, blocks, explicit_blocks):
    cache: dict[str, Recommender] = {}

    def get(name: str) -> Recommender:
        if name not in cache:
            train, _ = _data(name, blocks, explicit_blocks)
            cache[name] = build_model(name, FAST[name]).fit(train, _options(name, request))
        return cache[name]
    return get


@pytest.mark.parametrize("name", FAMILY_PARAMS)
def test_held_out_item_comes_first(name, fitted, blocks, explicit_blocks):
    train, held = _data(name, blocks, explicit_blocks)
    users = np.arange(train.n_users)
    items, _ = fitted(name).recommend(users, 1)
    if name == "popularity":  # not personalized: the most popular unseen item
        pop = np.bincount(train.item_idx, minlength=train.n_items).astype(float)
        seen = train.csr().toarray() > 0
        best_unseen = np.where(seen, -np.inf, pop).max(1)  # ties: any of the most popular
        np.testing.assert_array_equal(pop[items[:, 0]], best_unseen)
    else:
        np.testing.assert_array_equal(items[:, 0], held)


@pytest.mark.parametrize("name", FAMILY_PARAMS)
def test_recommend_shapes_and_excludes_seen(name, fitted, blocks, explicit_blocks):
    train, _ = _data(name, blocks, explicit_blocks)
    model = fitted(name)
    users = np.array([0, 5, 5, 11])
    items, scores = model.recommend(users, train.n_items + 2)
    assert items.shape == scores.shape == (4, train.n_items + 2)
    assert items.dtype == np.int64 and scores.dtype == np.float32
    seen = train.csr().toarray() > 0
    for row, vals, u in zip(items, scores, users):
        real = row[row >= 0]
        assert not seen[u, real].any()
        assert sorted(real) == sorted(np.flatnonzero(~seen[u]))  # every unseen item, once
        assert (row[len(real):] == -1).all() and np.isneginf(vals[len(real):]).all()
        assert (np.diff(vals[: len(real)]) <= 1e-6).all()  # best first
    with_seen, _ = model.recommend(users[:1], train.n_items, exclude_seen=False)
    assert (with_seen >= 0).all()


@pytest.mark.parametrize("name", FAMILY_PARAMS)
def test_score_agrees_with_score_users(name, fitted, blocks):
    model = fitted(name)
    users, items = np.array([0, 3, 3, 7]), np.array([1, 0, 14, 9])
    pairs = model.score(users, items)
    assert pairs.dtype == np.float32 and pairs.shape == (4,)
    block = model.score_users(np.array([0, 3, 7]))
    assert block.shape == (3, model.n_items)
    np.testing.assert_allclose(pairs, block[[0, 1, 1, 2], items], rtol=1e-4, atol=1e-5)
    if model.factorized:
        u, v = model.user_vectors(), model.item_vectors()
        assert u.shape[0] == model.n_users and v.shape[0] == model.n_items
        np.testing.assert_allclose(block, u[[0, 3, 7]] @ v.T, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", FAMILY_PARAMS)
def test_save_load_round_trip(name, fitted, tmp_path):
    model = fitted(name)
    model.save(tmp_path / "model.pt")
    loaded = Recommender.load(tmp_path / "model.pt")
    assert type(loaded) is type(model) and loaded.config == model.config
    users = np.arange(model.n_users)
    np.testing.assert_allclose(loaded.score_users(users), model.score_users(users), rtol=1e-6)
    np.testing.assert_array_equal(loaded.recommend(users, 3)[0], model.recommend(users, 3)[0])


@pytest.mark.parametrize("name", [n for n in sorted(FAMILIES) if n != "als_spark"])
def test_same_seed_same_model(name, request, blocks, explicit_blocks):
    train, _ = _data(name, blocks, explicit_blocks)
    params = {**FAST[name], **({"epochs": 3} if "epochs" in FAST[name] else {})}
    a = build_model(name, params).fit(train, _options(name, request, seed=3))
    b = build_model(name, params).fit(train, _options(name, request, seed=3))
    users = np.arange(train.n_users)
    np.testing.assert_array_equal(a.score_users(users), b.score_users(users))


@pytest.mark.parametrize("name", FAMILY_PARAMS)
def test_redacting_a_user_removes_what_the_model_learned_from_them(name, fitted, blocks, explicit_blocks,
                                                                   tmp_path):
    """Issue 15 (right to be forgotten): a bundle in the MLflow store kept an erased user's id and
    learned vector. After `redact_bundle`, two erased users of different groups get the same scores
    (nothing of their own data is left to tell them apart), their id is gone, and every other
    user is scored as before (except by ease_ensemble, whose user-side weights mix users: the
    erased users' share of the others' scores goes too)."""
    from recsys.models.bundle import REDACTED_ID, ModelBundle, redact_bundle

    train, _ = _data(name, blocks, explicit_blocks)
    model = fitted(name)
    ids = np.array([f"u{u}" for u in range(train.n_users)])
    folder = ModelBundle(model, ids, np.array([f"i{i}" for i in range(train.n_items)])).save(tmp_path / "b")
    gone = np.array([4, 5])  # groups 1 and 2
    before = model.score_users(np.arange(train.n_users))
    if name != "popularity":
        assert not np.allclose(before[4], before[5])

    assert redact_bundle(folder, ids[gone].tolist() + ["not-a-user"]) == 2
    after = ModelBundle.load(folder)
    assert list(after.user_ids[gone]) == [REDACTED_ID] * 2 and not set(ids[gone]) & set(after.user_ids)
    scores = after.model.score_users(np.arange(train.n_users))
    np.testing.assert_allclose(scores[4], scores[5], rtol=1e-5, atol=1e-6)
    others = np.setdiff1d(np.arange(train.n_users), gone)
    if name != "ease_ensemble":
        np.testing.assert_allclose(scores[others], before[others], rtol=1e-5, atol=1e-6)
    assert redact_bundle(folder, ids[gone].tolist()) == 0  # a second pass finds nothing
