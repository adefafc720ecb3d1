"""The synthetic generator: deterministic, every format, every bad-row kind, side inputs."""
from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from recsys.data.generator import BAD_KINDS, generate_landing

SMALL = dict(n_users=50, n_items=40, events_per_day=1500, bad_row_rate=0.05)


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_landing(a, "2024-01-01", 2, seed=1, **SMALL)
    generate_landing(b, "2024-01-01", 2, seed=1, **SMALL)
    generate_landing(c, "2024-01-01", 2, seed=2, **SMALL)
    assert _digest(a) == _digest(b) != _digest(c)


def test_layout_formats_bad_rows_and_side_inputs(tmp_path):
    report = generate_landing(tmp_path, "2024-01-01", 2, seed=3, chunk_size=300, **SMALL)
    day = tmp_path / "interactions" / "ds=2024-01-02"
    names = sorted(p.name for p in day.iterdir())
    assert {n.split(".", 1)[1] for n in names} == {"jsonl", "csv", "parquet", "jsonl.gz", "csv.gz"}
    assert all(report["bad_rows"][k] > 0 for k in BAD_KINDS)
    assert report["duplicates"] > 0
    items = pd.read_json(tmp_path / "items" / "ds=2024-01-02" / "items.jsonl", lines=True)
    users = pd.read_csv(tmp_path / "users" / "ds=2024-01-02" / "users.csv")
    # New items and users appear every day (cold start).
    day1 = pd.read_json(tmp_path / "items" / "ds=2024-01-01" / "items.jsonl", lines=True)
    assert len(items) > len(day1) and len(users) > 50
    assert set(items.columns) >= {"item_id", "title", "genres", "tags", "year", "price", "available"}
    first = json.loads((tmp_path / "interactions" / "ds=2024-01-01" / "part-00000.jsonl").read_text().split("\n")[0])
    assert set(first) == {"event_id", "user_id", "item_id", "event_type", "value", "ts"}


def test_popularity_is_skewed_and_tastes_follow_clusters(tmp_path):
    generate_landing(tmp_path, "2024-01-01", 1, seed=5, n_users=200, n_items=200,
                     events_per_day=6000, bad_row_rate=0.0, duplicate_rate=0.0, formats=("csv",))
    ev = pd.concat(pd.read_csv(p) for p in (tmp_path / "interactions" / "ds=2024-01-01").glob("*.csv"))
    counts = ev["item_id"].value_counts()
    # Power law: the top 10% of items take far more than 10% of the events.
    assert counts.head(len(counts) // 10).sum() / counts.sum() > 0.4


def _events(root):
    return pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False)
                      for p in sorted((root / "interactions").rglob("*.csv"))], ignore_index=True)


def test_internal_users_take_their_rate_and_change_nothing_else(tmp_path):
    base = dict(n_users=60, n_items=40, events_per_day=4000, bad_row_rate=0.0, formats=("csv",))
    generate_landing(tmp_path / "plain", "2024-01-01", 1, seed=4, **base)
    report = generate_landing(tmp_path / "qa", "2024-01-01", 1, seed=4, **base,
                              internal_users=("qa-1", "qa-2"), internal_rate=0.05)
    plain, qa = _events(tmp_path / "plain"), _events(tmp_path / "qa")
    internal = qa["user_id"].isin(["qa-1", "qa-2"])
    # Drawn from their own stream: only user_id changes, and only on the internal rows.
    pd.testing.assert_frame_equal(qa.drop(columns="user_id"), plain.drop(columns="user_id"))
    assert (qa["user_id"] == plain["user_id"]).to_numpy().tolist() == (~internal).tolist()
    assert set(qa.loc[internal, "user_id"]) == {"qa-1", "qa-2"}
    assert report["internal_events"] == internal.sum()
    assert 0.03 < internal.mean() < 0.07


def test_internal_rate_without_internal_users_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="internal_users"):
        generate_landing(tmp_path, "2024-01-01", 1, internal_rate=0.1, **SMALL)
