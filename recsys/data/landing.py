"""Write imported ratings, catalogs and profiles into the landing layout (the raw-log contract).

Ratings become ``rating`` events, one ``ds`` partition per UTC day of their timestamp (so the
clean step's ts window holds). Rows without a timestamp get noon of ``default_ds``.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.io import parse_ds
from recsys.schema import DS


def ratings_to_events(ratings: pd.DataFrame, default_ds: str, id_prefix: str = "r") -> pd.DataFrame:
    """Ratings (user_id, item_id, rating, ts) -> raw-log events with an ``ds`` column."""
    noon = int(dt.datetime.combine(parse_ds(default_ds), dt.time(12), tzinfo=dt.timezone.utc).timestamp())
    ts = ratings["ts"].astype("Int64").fillna(noon).astype("int64").to_numpy()
    return pd.DataFrame({
        "event_id": np.char.add(id_prefix, np.arange(len(ratings)).astype(str)),
        "user_id": ratings["user_id"].astype(str).to_numpy(),
        "item_id": ratings["item_id"].astype(str).to_numpy(),
        "event_type": "rating",
        "value": ratings["rating"].astype("float64").to_numpy(),
        "ts": ts,
        DS: pd.to_datetime(ts, unit="s", utc=True).strftime("%Y-%m-%d"),
    })


def write_landing(landing: Path | str, ratings: pd.DataFrame, items: pd.DataFrame | None,
                  users: pd.DataFrame | None, default_ds: str) -> dict:
    """Write events per day as Parquet, and the catalog/profiles into the last day's partition."""
    landing = Path(landing)
    events = ratings_to_events(ratings, default_ds)
    days = sorted(events[DS].unique())
    for ds, part in events.groupby(DS, sort=True):
        out = landing / "interactions" / f"{DS}={ds}"
        out.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(part.drop(columns=[DS]), preserve_index=False),
                       out / "imported.parquet")
    last = days[-1] if days else default_ds
    for table, df in (("items", items), ("users", users)):
        if df is not None:
            out = landing / table / f"{DS}={last}"
            out.mkdir(parents=True, exist_ok=True)
            df.to_json(out / f"{table}.jsonl", orient="records", lines=True)
    return {"events": len(events), "days": len(days), "first_ds": days[0] if days else None,
            "last_ds": last, "items": 0 if items is None else len(items),
            "users": 0 if users is None else len(users)}
