"""`recsys bench quality` end to end on a tiny generated MovieLens-100K-format folder."""
import json

import numpy as np
import pytest

from recsys.bench.quality import load_bench_data, markdown_table
from recsys.cli import main

REQUIRED = {"name", "precision@10", "recall@10", "ndcg@10", "map@10", "rmse", "train_seconds",
            "recommend_seconds"}
N_USERS, N_ITEMS = 12, 8


def _item_rating(item: int) -> int:
    return 2 + item % 2  # every rating of an item is the same: 2 or 3


def _write_ml100k(folder):
    rows = [(u, i, _item_rating(i), 880000000 + 10 * u + i)
            for u in range(1, N_USERS + 1) for i in range(1, N_ITEMS + 1) if (u + i) % 4]
    (folder / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows))
    flags = "|".join(["0"] * 18 + ["1"])
    (folder / "u.item").write_text("".join(
        f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|{flags}\n" for i in range(1, N_ITEMS + 1)))
    (folder / "u.user").write_text("".join(
        f"{u}|{20 + u}|{'MF'[u % 2]}|student|0{u:04d}\n" for u in range(1, N_USERS + 1)))
    # Official folds: each test rating is one above the item's constant training rating, so an
    # item-mean predictor is off by exactly 1 on every test row: RMSE 1.0 in every fold.
    for f in range(1, 6):
        base = [r for r in rows if (r[0] + r[1]) % 5 != f % 5]
        test = [(u, i, r + 1, t) for u, i, r, t in rows if (u + i) % 5 == f % 5]
        (folder / f"u{f}.base").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in base))
        (folder / f"u{f}.test").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in test))
    return rows


@pytest.fixture()
def fake_families(monkeypatch):
    from recsys import model_params
    from recsys.models import registry
    from tests.evaluate.eval_fakes import ItemMeanConfig

    for name, model in (("item_mean", "ItemMean"), ("broken", "Broken")):
        monkeypatch.setitem(registry.FAMILIES, name, f"tests.evaluate.eval_fakes:{model}")
        monkeypatch.setitem(model_params.PARAMS, name, ItemMeanConfig)


def test_bench_quality_end_to_end(tmp_path, recsys_home, fake_families, capsys):
    data = tmp_path / "ml"
    data.mkdir()
    rows = _write_ml100k(data)
    out = tmp_path / "q.json"
    rc = main(["bench", "quality", "--data", str(data), "--k", "10", "--seed", "42",
               "--json", str(out), "--models", "item_mean"])
    assert rc == 0
    result = json.loads(out.read_text())
    [row] = result["models"]
    assert REQUIRED <= row.keys() and row["name"] == "item_mean"
    assert row["rmse"] == pytest.approx(1.0, abs=1e-6)  # mean over the five official folds
    assert row["rmse_folds"] == pytest.approx([1.0] * 5, abs=1e-6)
    for key in ("precision@10", "recall@10", "ndcg@10", "map@10"):
        assert 0.0 <= row[key] <= 1.0
    assert row["train_seconds"] >= 0 and row["recommend_seconds"] >= 0
    assert result["data"] == {"users": N_USERS, "items": N_ITEMS, "ratings": len(rows),
                              "train": result["data"]["train"], "test": result["data"]["test"]}
    assert result["data"]["train"] + result["data"]["test"] == len(rows)
    assert "| item_mean |" in capsys.readouterr().out


def test_a_broken_model_is_reported_and_the_others_still_run(tmp_path, recsys_home,
                                                             fake_families):
    data = tmp_path / "ml"
    data.mkdir()
    _write_ml100k(data)
    out = tmp_path / "q.json"
    rc = main(["bench", "quality", "--data", str(data), "--json", str(out),
               "--models", "broken,item_mean"])
    assert rc == 1
    rows = {r["name"]: r for r in json.loads(out.read_text())["models"]}
    assert "deliberately broken" in rows["broken"]["error"] and rows["broken"]["ndcg@10"] is None
    assert rows["item_mean"]["ndcg@10"] is not None
    assert "failed" in markdown_table({"models": list(rows.values())})


def test_delimited_file_with_header_is_imported(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("userId,movieId,rating,timestamp\n1,a,4,100\n1,b,3,101\n2,a,5,102\n")
    bench = load_bench_data(path)
    assert (bench.data.n_users, bench.data.n_items, len(bench.data)) == (2, 2, 3)
    assert bench.data.ts.tolist() == [100, 101, 102]
    np.testing.assert_array_equal(bench.data.rating, [4, 3, 5])
    assert bench.folds == ()


def test_sampled_protocol_holds_out_each_users_last_item(tmp_path, recsys_home, fake_families,
                                                          capsys):
    """NCF protocol: each user's last item ranked among 99 sampled negatives.

    In the fake data a user's never-rated items all share one parity, so every negative an
    item-mean model sees scores the same: the held-out item is first (a hit, NDCG 1) when it is an
    odd item (mean 3), or when the negatives are even (mean 2, a tie is not "higher"); else last.
    """
    data = tmp_path / "ml"
    data.mkdir()
    rows = _write_ml100k(data)
    out = tmp_path / "s.json"
    assert main(["bench", "quality", "--data", str(data), "--k", "10", "--protocol", "sampled",
                 "--json", str(out), "--models", "item_mean"]) == 0
    result = json.loads(out.read_text())
    [row] = result["models"]
    expected = []
    for u in range(1, N_USERS + 1):
        last = max(i for uu, i, _, _ in rows if uu == u)  # timestamps rise with the item id
        unrated = [i for i in range(1, N_ITEMS + 1) if (u + i) % 4 == 0]
        expected.append(last % 2 == 1 or unrated[0] % 2 == 0)
    assert row["hr@10"] == pytest.approx(np.mean(expected))
    assert row["ndcg@10"] == pytest.approx(np.mean(expected))  # every hit ranks first
    assert result["protocol"]["name"] == "sampled" and result["protocol"]["negatives"] == 99
    assert "HR@10 (sampled)" in capsys.readouterr().out
