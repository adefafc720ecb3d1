"""Business rules (recsys.score.rules): exclude, adjust and cap by catalog attribute, applied before
the top-N is cut, by both engines, and refused at config load when they name nonsense."""
from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from recsys import io
from recsys.config import (
    CATALOG_ATTRIBUTES,
    ConfigError,
    RulesConfig,
    ScoreConfig,
    load_config,
)
from recsys.schema import ITEMS
from recsys.score.engine import write_topn
from recsys.score.publish import read_table
from recsys.score.rules import MissingCatalog, Rules
from recsys.score.topn import FactorizedScorer
from tests.score.conftest import PROV, fit_bundle, make_data

N_ITEMS = 12


def catalog(item_ids, genres=None, tags=None, year=None, price=None, available=None) -> pa.Table:
    """A clean `items` table (schema.ITEM_CATALOG columns) for ``item_ids``."""
    n = len(item_ids)
    return pa.table({
        "item_id": pa.array(list(item_ids), pa.string()),
        "title": pa.array([f"title {i}" for i in item_ids], pa.string()),
        "genres": pa.array(genres or [[] for _ in range(n)], pa.list_(pa.string())),
        "tags": pa.array(tags or [[] for _ in range(n)], pa.list_(pa.string())),
        "year": pa.array(year or [2000.0] * n, pa.float64()),
        "price": pa.array(price or [1.0] * n, pa.float64()),
        "available": pa.array(available or [True] * n, pa.bool_()),
        "description": pa.array([None] * n, pa.string()),
    })


def rules(cat: pa.Table, **cfg) -> Rules:
    return Rules(RulesConfig.model_validate(cfg), cat)


@pytest.fixture(scope="module")
def setup():
    data = make_data(n_users=30, n_items=N_ITEMS, per_user=3, seed=5)
    return data, fit_bundle(data, epochs=3)


def lists(folder) -> dict[str, list[str]]:
    t = read_table(folder).sort_by([("user_id", "ascending"), ("rank", "ascending")]).to_pydict()
    out: dict[str, list[str]] = {}
    for u, i in zip(t["user_id"], t["item_id"]):
        out.setdefault(u, []).append(i)
    return out


def score(setup, tmp_path, name, rules_=None, top_n=4):
    data, bundle = setup
    write_topn(bundle, data, PROV, tmp_path / name, ScoreConfig(top_n=top_n, block_size=7), rules=rules_)
    return lists(tmp_path / name)


def test_exclude_by_attribute_removes_items_and_lists_stay_full(setup, tmp_path):
    data, _ = setup
    plain = score(setup, tmp_path, "plain")
    # Tag as adult the two items recommended most often without rules: the rule must matter.
    counts = {}
    for items in plain.values():
        for i in items:
            counts[i] = counts.get(i, 0) + 1
    adult = sorted(counts, key=counts.get)[-2:]
    cat = catalog(data.item_ids, tags=[["adult"] if i in adult else ["family"] for i in data.item_ids])
    ruled = score(setup, tmp_path, "ruled", rules(cat, exclude=[{"attribute": "tags", "op": "contains",
                                                                 "value": "adult"}]))
    assert any(set(adult) & set(v) for v in plain.values())
    assert not any(set(adult) & set(v) for v in ruled.values())
    assert all(len(v) == 4 for v in ruled.values())  # 12 items - 3 seen - 2 excluded >= 4


def test_excluded_items_never_reach_the_popular_fallback(setup, tmp_path):
    data, bundle = setup
    new = dataclasses.replace(data, user_ids=np.append(data.user_ids, "new-user"),
                              interactions=dataclasses.replace(data.interactions, n_users=31))
    write_topn(bundle, new, PROV, tmp_path / "plain", ScoreConfig(top_n=4))
    top = lists(tmp_path / "plain")["new-user"][0]  # the most popular item
    cat = catalog(data.item_ids, price=[99.0 if i == top else 5.0 for i in data.item_ids])
    r = rules(cat, exclude=[{"attribute": "price", "op": ">", "value": 50}])
    write_topn(bundle, new, PROV, tmp_path / "ruled", ScoreConfig(top_n=4), rules=r)
    fallback = lists(tmp_path / "ruled")["new-user"]
    assert top not in fallback and len(fallback) == 4


def test_cap_per_genre_walks_down_the_list(setup, tmp_path):
    data, _ = setup
    # Two genres, alternating: without a cap, some list of 4 holds 3+ items of one genre.
    genres = [["drama"] if k % 2 else ["comedy"] for k in range(N_ITEMS)]
    plain = score(setup, tmp_path, "plain")
    genre_of = {i: g[0] for i, g in zip(data.item_ids, genres)}

    def worst(ls):
        return max(max(sum(genre_of[i] == g for i in v) for g in ("drama", "comedy")) for v in ls.values())

    assert worst(plain) > 2
    ruled = score(setup, tmp_path, "ruled", rules(catalog(data.item_ids, genres=genres),
                                                   cap=[{"attribute": "genres", "max": 2}]))
    assert worst(ruled) == 2
    assert all(len(v) == 4 for v in ruled.values())
    # The cap keeps the best items that fit: each capped list is the uncapped order filtered.
    for u, v in ruled.items():
        assert v[0] == plain[u][0]


def bound(cat_rules: Rules, n_items: int):
    return cat_rules.bind(np.array([f"i{k:02d}" for k in range(n_items)]))


def test_cap_fills_the_list_beyond_the_candidate_pool():
    # Items 0..5 score best and are all "a"; the pool (top_n * pool_factor = 2) holds only "a"s.
    ids = [f"i{k:02d}" for k in range(8)]
    cat = catalog(ids, genres=[["a"]] * 6 + [["b"], ["c"]])
    r = bound(rules(cat, cap=[{"attribute": "genres", "max": 1}], pool_factor=1), 8)
    scores = torch.tensor([[8.0, 7, 6, 5, 4, 3, 2, 1]])
    items, vals = r.top_n(scores.clone(), 2)
    assert items.tolist() == [[0, 6]]  # best "a", then the best item of another genre
    assert vals.tolist() == [[8.0, 2.0]]
    # When nothing else fits, the tail is padded like top_n's (-1, -inf).
    cat = catalog(ids, genres=[["a"]] * 8)
    r = bound(rules(cat, cap=[{"attribute": "genres", "max": 1}]), 8)
    items, vals = r.top_n(scores.clone(), 3)
    assert items.tolist() == [[0, -1, -1]] and np.isneginf(vals[0, 1:]).all()


def test_two_caps_count_each_attribute_separately():
    ids = [f"i{k:02d}" for k in range(5)]
    cat = catalog(ids, genres=[["a"], ["b"], ["a", "b"], ["c"], ["c"]],
                  tags=[["x"], ["x"], [], ["y"], ["x"]])
    r = bound(rules(cat, cap=[{"attribute": "genres", "max": 1}, {"attribute": "tags", "max": 1}]), 5)
    # i00 (a, x); i01 b but x is full; i02 a is full; i03 (c, y); i04 c is full
    items, _ = r.top_n(torch.tensor([[5.0, 4, 3, 2, 1]]), 4)
    assert items.tolist() == [[0, 3, -1, -1]]


def test_adjust_boosts_and_buries_by_attribute():
    ids = [f"i{k:02d}" for k in range(4)]
    cat = catalog(ids, year=[1950.0, 2020.0, 2021.0, None], tags=[["promo"], [], [], ["promo"]])
    r = bound(rules(cat, adjust=[{"attribute": "tags", "op": "contains", "value": "promo", "multiply": 3.0},
                                 {"attribute": "year", "op": ">=", "value": 2021, "add": -10.0}]), 4)
    scores = torch.tensor([[1.0, 2.0, 2.5, 0.5]])
    items, vals = r.top_n(scores.clone(), 4)
    # i00: 1*3 = 3, i01: 2, i02: 2.5-10 (buried), i03: 0.5*3 = 1.5 (a missing year never matches)
    assert items.tolist() == [[0, 1, 3, 2]]
    np.testing.assert_allclose(vals, [[3.0, 2.0, 1.5, -7.5]])


def test_scorer_applies_rules_through_its_hook():
    ids = [f"i{k:02d}" for k in range(3)]
    r = bound(rules(catalog(ids, available=[True, False, True]),
                    exclude=[{"attribute": "available", "op": "==", "value": False}]), 3)
    users, items = np.ones((1, 1), np.float32), np.array([[1.0], [3.0], [2.0]], np.float32)
    empty = np.empty(0, np.int64)
    assert FactorizedScorer(users, items).topn(np.array([0]), 2, empty, empty)[0].tolist() == [[1, 2]]
    assert FactorizedScorer(users, items, rules=r).topn(np.array([0]), 2, empty, empty)[0].tolist() == [[2, 0]]


def test_missing_values_and_unlisted_items_never_match():
    ids = ["a", "b", "c"]
    cat = catalog(["a", "b"], tags=[["x"], None], price=[1.0, None])
    r = Rules(RulesConfig.model_validate({"exclude": [
        {"attribute": "tags", "op": "not_contains", "value": "x"},
        {"attribute": "price", "op": "not_in", "value": [1.0]}]}), cat).bind(np.array(ids))
    assert r.excluded is None  # b's tags/price are null; c is not in the catalog


def test_rules_need_a_catalog_and_read_the_newest_one_up_to_ds(tmp_path):
    cfg = RulesConfig.model_validate({"exclude": [{"attribute": "available", "op": "==", "value": False}]})
    assert Rules.load(RulesConfig(), tmp_path, "2026-01-02") is None  # no rules: no catalog needed
    with pytest.raises(MissingCatalog, match="no clean `items` partition at or before ds=2026-01-02"):
        Rules.load(cfg, tmp_path, "2026-01-02")
    for ds in ("2026-01-01", "2026-01-03"):
        folder = io.partition_path(tmp_path, ITEMS, ds)
        folder.mkdir(parents=True)
        pq.write_table(catalog([f"from-{ds}"]), folder / "part-0.parquet")
        (folder / "_SUCCESS").touch()
    loaded = Rules.load(cfg, tmp_path, "2026-01-02")
    assert loaded.catalog_ds == "2026-01-01"
    assert loaded.catalog.column("item_id").to_pylist() == ["from-2026-01-01"]


@pytest.mark.parametrize("rule, message", [
    ({"exclude": [{"attribute": "region", "op": "==", "value": "EU"}]}, "unknown item attribute 'region'"),
    ({"exclude": [{"attribute": "available", "op": "is", "value": False}]},
     "operator 'is' does not apply to 'available'"),
    ({"exclude": [{"attribute": "genres", "op": "==", "value": "Drama"}]}, "operator '==' does not apply to 'genres'"),
    ({"exclude": [{"attribute": "price", "op": ">", "value": "10"}]}, "price is a number"),
    ({"exclude": [{"attribute": "title", "op": "in", "value": "x"}]}, "expected a non-empty list"),
    ({"adjust": [{"attribute": "tags", "op": "contains", "value": "x", "multiply": 0}]}, "multiply"),
    ({"cap": [{"attribute": "price", "max": 2}]}, "cannot cap by 'price'"),
    ({"cap": [{"attribute": "genres", "max": 0}]}, "cap.0.max"),
    ({"exclude": [{"attribute": "tags", "op": "contains", "value": "x", "colour": "red"}]}, "colour"),
])
def test_config_refuses_bad_rules_with_a_clear_message(rule, message):
    overrides = {f"score.rules.{k}": v for k, v in rule.items()}
    with pytest.raises(ConfigError, match="score.rules") as err:
        load_config(overrides=overrides)
    assert message in str(err.value)


def test_rule_attributes_are_the_catalog_columns():
    from recsys.schema import ITEM_CATALOG

    assert list(CATALOG_ATTRIBUTES) == ITEM_CATALOG.names


@pytest.mark.slow  # starts Spark tasks with Python workers
def test_spark_engine_applies_the_same_rules(spark, setup, tmp_path):
    from recsys.score.spark_score import write_topn_spark

    data, bundle = setup
    genres = [["drama"] if k % 2 else ["comedy"] for k in range(N_ITEMS)]
    tags = [["adult"] if k in (1, 4) else [] for k in range(N_ITEMS)]
    r = rules(catalog(data.item_ids, genres=genres, tags=tags),
              exclude=[{"attribute": "tags", "op": "contains", "value": "adult"}],
              adjust=[{"attribute": "genres", "op": "contains", "value": "drama", "add": 0.05}],
              cap=[{"attribute": "genres", "max": 2}])
    options = ScoreConfig(top_n=4, block_size=7)
    write_topn(bundle, data, PROV, tmp_path / "local", options, rules=r)
    write_topn_spark(spark, bundle, data, PROV, tmp_path / "spark", options, rules=r)
    local, dist = lists(tmp_path / "local"), lists(tmp_path / "spark")
    assert local == dist
    assert not any({"i01", "i04"} & set(v) for v in dist.values())
    assert all(len(v) == 4 for v in dist.values())
