"""`because` (the history items behind each row) and fold-in (new users scored from their history)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq
import pytest

from recsys.config import ScoreConfig
from recsys.models import FitOptions, Interactions, build_model
from recsys.models.bundle import ModelBundle
from recsys.score import reasons
from recsys.score.engine import write_topn
from recsys.score.validate import Reference, TableRejected, validate
from tests.score.conftest import PROV, Data, make_data


def read(path) -> pa.Table:
    return pq.read_table(path)


def reference(data: Data) -> Reference:
    inter = data.interactions
    return Reference(active_users=data.user_ids, seen_users=data.user_ids[inter.user_idx],
                     seen_items=data.item_ids[inter.item_idx])


def ease_with(weights: np.ndarray, data: Data) -> ModelBundle:
    """An EASE model fitted on ``data`` whose B is then replaced by ``weights`` (hand-checkable)."""
    model = build_model("ease", {"l2": 1.0}).fit(data.interactions, FitOptions())
    model.weights = weights.astype(np.float32)
    return ModelBundle(model, data.user_ids.copy(), data.item_ids.copy())


def test_because_lists_the_largest_terms_of_an_ease_score_from_the_users_history(tmp_path):
    # One user who saw items 0..3; items 4 and 5 are candidates. Scores = x_u @ B, so item 4 scores
    # 0.5 + 0.1 + 0.3 - 0.2 = 0.7 (largest terms: item 0, then 2, then 1; item 3 argues against)
    # and item 5 scores 0.05 + 0.04 + 0 + 0.01 = 0.1 (item 2's term is 0: no support).
    # A second user (saw 4 and 5, whose rows of B are 0) is there because EASE needs two to fit.
    inter = Interactions(user_idx=np.array([0, 0, 0, 0, 1, 1]), item_idx=np.array([0, 1, 2, 3, 4, 5]),
                         weight=np.ones(6, np.float32), n_users=2, n_items=6)
    data = Data(inter, np.array(["u", "v"]), np.array([f"i{k}" for k in range(6)]))
    b = np.zeros((6, 6))
    b[:4, 4] = [0.5, 0.1, 0.3, -0.2]
    b[:4, 5] = [0.05, 0.04, 0.0, 0.01]
    write_topn(ease_with(b, data), data, PROV, tmp_path, ScoreConfig(top_n=2))
    everyone = read(tmp_path)
    validate(everyone, top_n=2, reference=reference(data))
    assert all(len(x) == 0 for x in everyone.filter(pa.compute.equal(everyone["user_id"], "v"))["because"].to_pylist())
    table = everyone.filter(pa.compute.equal(everyone["user_id"], "u"))
    assert table.column("item_id").to_pylist() == ["i4", "i5"]
    np.testing.assert_allclose(table.column("score").to_numpy(), [0.7, 0.1], rtol=1e-5)
    assert table.column("because").to_pylist() == [["i0", "i2", "i1"], ["i0", "i1", "i3"]]
    assert set(table.column("because_reason").to_pylist()) == {"history"}


def brute_force(support_matrix: np.ndarray, hist: list[set[int]], chosen: np.ndarray, k=3) -> list:
    """Per (user, chosen item): the k history items with the largest positive support, by loops."""
    out = []
    for u, items in enumerate(chosen):
        row = []
        for i in items:
            cand = sorted(((support_matrix[j, i], j) for j in hist[u] if j != i and support_matrix[j, i] > 0),
                          reverse=True)
            row.append([j for _, j in cand[:k]])
        out.append(row)
    return out


@pytest.mark.parametrize("kind", ["item_item", "vectors"])
def test_because_matches_a_brute_force_search_over_each_users_history(kind):
    rng = np.random.default_rng(7)
    m, b, n = 30, 9, 4
    if kind == "item_item":
        full = rng.standard_normal((m, m)).astype(np.float32)
        support = reasons.ItemItemSupport(full)
    else:
        v = rng.standard_normal((m, 5)).astype(np.float32)
        support = reasons.VectorSupport(v)
        unit = v / np.linalg.norm(v, axis=1, keepdims=True)
        full = unit @ unit.T
    # Histories of very different lengths (0..20), so the chunking by length is exercised.
    hist = [set(rng.choice(m, size=int(s), replace=False).tolist()) for s in rng.integers(0, 21, b)]
    rows = np.concatenate([np.full(len(h), u) for u, h in enumerate(hist)]).astype(np.int64)
    items = np.concatenate([sorted(h) for h in hist]).astype(np.int64)
    chosen = np.stack([rng.choice(m, n, replace=False) for _ in range(b)]).astype(np.int64)
    chosen[0, -1] = -1  # a padded slot gets no reasons
    got = reasons.because(support, rows, items, chosen)
    want = brute_force(full, hist, np.where(chosen >= 0, chosen, 0))
    want[0][-1] = []
    assert [[[j for j in cell if j >= 0] for cell in row] for row in got.tolist()] == want


def test_factorized_because_items_are_the_history_items_nearest_the_recommended_one(data, bundle, tmp_path):
    write_topn(bundle, data, PROV, tmp_path, ScoreConfig(top_n=4, block_size=5))
    table = read(tmp_path)
    validate(table, top_n=4, reference=reference(data))
    v = bundle.model.item_vectors()
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    index = {i: k for k, i in enumerate(data.item_ids)}
    seen = {}
    for u, i in zip(data.user_ids[data.interactions.user_idx], data.item_ids[data.interactions.item_idx]):
        seen.setdefault(u, set()).add(index[i])
    df = table.to_pandas()
    assert df["because"].map(len).gt(0).any()
    for row in df.itertuples():
        i = index[row.item_id]
        sims = sorted(((unit[j] @ unit[i], j) for j in seen[row.user_id] if unit[j] @ unit[i] > 0), reverse=True)
        assert [index[j] for j in row.because] == [j for _, j in sims[:3]]


def test_because_off_leaves_lists_unchanged_and_empty_reasons(data, bundle, tmp_path):
    write_topn(bundle, data, PROV, tmp_path / "on", ScoreConfig(top_n=4))
    write_topn(bundle, data, PROV, tmp_path / "off", ScoreConfig(top_n=4), because=False)
    on, off = read(tmp_path / "on"), read(tmp_path / "off")
    assert on.select(["user_id", "item_id"]).equals(off.select(["user_id", "item_id"]))
    assert all(len(x) == 0 for x in off.column("because").to_pylist())


def test_cold_start_rows_carry_the_fallbacks_reason_and_no_items(bundle, tmp_path):
    base = make_data()
    data = dataclasses.replace(base, interactions=dataclasses.replace(base.interactions, n_users=13),
                               user_ids=np.append(base.user_ids, "new-user"))
    write_topn(bundle, data, PROV, tmp_path, ScoreConfig(top_n=4))
    df = read(tmp_path).to_pandas()
    cold = df[df.user_id == "new-user"]
    assert set(cold.source) == {"popular"} and set(cold.because_reason) == {"popular"}
    assert cold.because.map(len).eq(0).all()


@pytest.mark.parametrize("defect, message", [
    ("not_in_history", "because_in_history"),
    ("four_items", "longer than 3"),
    ("duplicate", "twice in a because list"),
    ("own_item", "name their own item"),
    ("wrong_reason", "does not match their source"),
    ("items_on_popular_row", "without reason 'history'"),
])
def test_validator_refuses_a_bad_because(data, bundle, tmp_path, defect, message):
    write_topn(bundle, data, PROV, tmp_path, ScoreConfig(top_n=4))
    table = read(tmp_path)
    validate(table, top_n=4, reference=reference(data))  # the engine's own table passes
    because = table.column("because").to_pylist()
    reason = table.column("because_reason").to_pylist()
    source = table.column("source").to_pylist()
    user = table.column("user_id").to_pylist()[0]
    seen = sorted(set(data.item_ids[data.interactions.item_idx[data.user_ids[data.interactions.user_idx] == user]]))
    unseen = sorted(set(data.item_ids) - set(seen))
    if defect == "not_in_history":
        because[0] = [unseen[0]]
    elif defect == "four_items":
        because[0] = (seen * 4)[:4]
    elif defect == "duplicate":
        because[0] = [seen[0], seen[0]]
    elif defect == "own_item":
        because[0] = [table.column("item_id")[0].as_py()]
    elif defect == "wrong_reason":
        reason[0] = "popular"
    else:
        source[0], reason[0] = "popular", "popular"
        because[0] = [seen[0]]
    bad = (table.set_column(table.schema.get_field_index("because"), table.schema.field("because"),
                            pa.array(because, table.schema.field("because").type))
           .set_column(table.schema.get_field_index("because_reason"), "because_reason", pa.array(reason))
           .set_column(table.schema.get_field_index("source"), "source", pa.array(source)))
    with pytest.raises(TableRejected, match=message):
        validate(bad, top_n=4, reference=reference(data))


# -- fold-in ---------------------------------------------------------------------------------

def planted(seed=0, old_users=120, new_users=12, per_group=15):
    """Two tastes over 30 items: group A (items 0-14) liked by 80% of users, group B (15-29) by
    the rest. Each user saw 8 items of their group. The new users (all taste B, the minority)
    arrive after training; half of each one's items are history, the rest the test."""
    rng = np.random.default_rng(seed)
    n_items = 2 * per_group
    users, items, taste = [], [], []
    for u in range(old_users + new_users):
        group = 1 if u >= old_users else int(rng.random() < 0.2)
        taste.append(group)
        chosen = rng.choice(per_group, 8, replace=False) + group * per_group
        users += [u] * 8
        items += chosen.tolist()
    users, items = np.array(users, np.int64), np.array(items, np.int64)
    user_ids = np.array([f"u{u:03d}" for u in range(old_users + new_users)])
    item_ids = np.array([f"i{i:02d}" for i in range(n_items)])
    is_new = users >= old_users
    first_half = np.zeros(len(users), bool)
    for u in range(old_users, old_users + new_users):
        first_half[np.flatnonzero(users == u)[:4]] = True
    day = ~is_new | first_half  # today's training set: old users' rows + the new users' first half
    test = {(user_ids[u], item_ids[i]) for u, i in zip(users[is_new & ~first_half], items[is_new & ~first_half])}
    today = Data(Interactions(user_idx=users[day], item_idx=items[day], weight=np.ones(int(day.sum()), np.float32),
                              n_users=old_users + new_users, n_items=n_items), user_ids, item_ids)
    trained = Interactions(user_idx=users[~is_new], item_idx=items[~is_new],
                           weight=np.ones(int((~is_new).sum()), np.float32), n_users=old_users, n_items=n_items)
    return today, trained, user_ids[old_users:], test


FAMILIES = {"ease": {"l2": 10.0}, "ials": {"factors": 8, "epochs": 8},
            "mf_bpr": {"factors": 8, "epochs": 30, "batch_size": 256}}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_new_users_are_folded_in_and_beat_the_popular_fallback(family, tmp_path):
    today, trained, new_ids, test = planted()
    model = build_model(family, FAMILIES[family]).fit(trained, FitOptions(seed=3))
    bundle = ModelBundle(model, today.user_ids[: trained.n_users].copy(), today.item_ids.copy())
    options = ScoreConfig(top_n=4)
    hits = {}
    for fold_in in (True, False):
        out = tmp_path / str(fold_in)
        summary = write_topn(bundle, today, PROV, out, options, fold_in=fold_in)
        table = read(out)
        validate(table, top_n=4, reference=reference(today))
        df = table.to_pandas()
        new = df[df.user_id.isin(new_ids)]
        assert set(new.source) == ({"fold_in"} if fold_in else {"popular"})
        assert set(df[~df.user_id.isin(new_ids)].source) == {"model"}
        assert summary["users_fold_in"] == (len(new_ids) if fold_in else 0)
        # Share of the new users' rows that are of their own taste (group B: items i15..i29).
        hits[fold_in] = float(new.item_id.str[1:].astype(int).ge(15).mean())
        hits[f"test_{fold_in}"] = sum((u, i) in test for u, i in zip(new.user_id, new.item_id)) / len(new)
        if fold_in:
            assert new.because.map(len).gt(0).all() and set(new.because_reason) == {"history"}
    # Popularity recommends the majority's items; fold-in finds the new users' own taste.
    # (4 of a new user's 11 unseen group-B items are their test items: a B-only list hits ~36%.)
    assert hits[False] < 0.1 and hits[True] > 0.9, hits
    assert hits["test_False"] < 0.1 and hits["test_True"] > 0.1, hits


def test_ridge_fold_in_recovers_a_trained_users_vector():
    # u = (V'V + l2 I)^-1 V' x: with x = V u_true exactly and a tiny l2, the solve returns u_true.
    from recsys.score.foldin import FoldIn

    rng = np.random.default_rng(1)
    v = rng.standard_normal((40, 4)).astype(np.float32)
    fold = FoldIn.for_vectors(v, l2=1e-6)
    # A binary history is what fold-in sees; check the formula against numpy's lstsq on it.
    items = np.array([1, 5, 9, 22, 31], np.int64)
    x = np.zeros(40)
    x[items] = 1
    want = np.linalg.lstsq(v.astype(np.float64), x, rcond=None)[0]
    got = fold.user_vectors(np.zeros(len(items), np.int64), items, 1)[0]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


def test_foldin_bench_holds_out_whole_users_with_their_first_half_as_history():
    from recsys.bench.foldin import split_new_users

    rng = np.random.default_rng(0)
    u = np.repeat(np.arange(20), 6)
    ts = rng.permutation(len(u)).astype(np.int64)
    data = Interactions(user_idx=u, item_idx=np.tile(np.arange(6), 20), weight=np.ones(len(u), np.float32),
                        n_users=20, n_items=6, ts=ts)
    new, train, hist, test = split_new_users(data, 0.2, seed=1)
    assert len(new) == 4 and not np.isin(u[train], new).any()
    assert set(u[hist]) == set(u[test]) == set(new)
    for user in new:  # 3 earliest events are history, the 3 latest the test
        h, t = ts[hist][u[hist] == user], ts[test][u[test] == user]
        assert len(h) == len(t) == 3 and h.max() < t.min()
    assert len(train) + len(hist) + len(test) == len(u)
