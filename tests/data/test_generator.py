"""The synthetic generator: deterministic, every format, every bad-row kind, side inputs."""
from __future__ import annotations

import hashlib
import json

import pandas as pd

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
