"""A seeded, realistic synthetic interaction log in the raw-log contract (plus catalog and profiles).

The world: items belong to latent taste clusters tied to their genres and title words (so content
features carry signal); item popularity follows a power law and drifts day to day (a random walk);
user activity is log-normal; each user prefers one cluster. New users and items appear every day
(cold start). Each day's events are written in chunks, rotating JSON Lines / CSV / Parquet (text
formats gzip-compressed in turn), with bad rows of every kind at ``bad_row_rate`` and resent
duplicates at ``duplicate_rate``, and events from internal/test accounts (``internal_users``, the
list the clean step quarantines as ``internal_user``) at ``internal_rate``. Everything is vectorized numpy and streamed chunk by chunk, so
the size of a run is bounded by ``chunk_size``, not by the number of events.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.io import parse_ds

GENRES = ("action", "adventure", "animation", "comedy", "crime", "documentary", "drama",
          "fantasy", "horror", "music", "mystery", "romance", "sci-fi", "thriller", "war", "western")
EVENT_TYPES = ("view", "click", "add_to_cart", "purchase", "rating")
EVENT_PROBS = (0.6, 0.2, 0.08, 0.04, 0.08)
BAD_KINDS = ("malformed_row", "missing_id", "malformed_id", "unknown_event_type", "bad_ts",
             "ts_out_of_window", "bad_value")
FORMATS = ("jsonl", "csv", "parquet")
OCCUPATIONS = ("student", "engineer", "artist", "teacher", "doctor", "retired", "sales", "other")
REGIONS = ("north", "south", "east", "west", "center")
_WORDS = ("star", "night", "love", "blood", "king", "city", "dream", "storm", "ghost", "road",
          "heart", "war", "river", "gold", "shadow", "song", "fire", "moon", "secret", "wild")


@dataclasses.dataclass
class _World:
    item_cluster: np.ndarray
    item_pop: np.ndarray  # log-popularity, drifts daily
    item_birth: np.ndarray  # day index from which the item exists
    user_cluster: np.ndarray
    user_activity: np.ndarray
    user_birth: np.ndarray


def _world(rng: np.random.Generator, n_users: int, n_items: int, days: int, new_users: int,
           new_items: int, n_clusters: int) -> _World:
    total_u, total_i = n_users + new_users * days, n_items + new_items * days
    # Power law: log-popularity of the k-th most popular item is -alpha * log(k), shuffled.
    alpha = 1.0
    pop = -alpha * np.log(rng.permutation(total_i) + 1.0)
    return _World(
        item_cluster=rng.integers(0, n_clusters, total_i),
        item_pop=pop,
        item_birth=np.concatenate([np.zeros(n_items, int), np.repeat(np.arange(days), new_items)]),
        user_cluster=rng.integers(0, n_clusters, total_u),
        user_activity=rng.lognormal(0.0, 1.0, total_u),
        user_birth=np.concatenate([np.zeros(n_users, int), np.repeat(np.arange(days), new_users)]),
    )


def _cluster_genres(n_clusters: int) -> list[list[str]]:
    return [[GENRES[(3 * c + k) % len(GENRES)] for k in range(3)] for c in range(n_clusters)]


def _catalog(rng: np.random.Generator, world: _World, day: int, n_clusters: int) -> pd.DataFrame:
    alive = np.flatnonzero(world.item_birth <= day)
    cg = _cluster_genres(n_clusters)
    # Seeded per item (not per day), so an item keeps its attributes from one day to the next.
    per = np.random.default_rng(7)
    k = len(world.item_cluster)
    extra_genre = per.integers(0, len(GENRES), k)
    year = per.integers(1960, 2025, k)
    price = np.round(per.lognormal(2.5, 0.6, k), 2)
    w1 = (world.item_cluster * 2 + per.integers(0, 2, k)) % len(_WORDS)
    w2 = per.integers(0, len(_WORDS), k)
    available = rng.random(len(alive)) > 0.03
    return pd.DataFrame({
        "item_id": [f"i{i}" for i in alive],
        "title": [f"{_WORDS[w1[i]].title()} {_WORDS[w2[i]]} {i}" for i in alive],
        "genres": [sorted({*cg[world.item_cluster[i]][:2], GENRES[extra_genre[i]]}) for i in alive],
        "tags": [[_WORDS[w1[i]]] for i in alive],
        "year": year[alive],
        "price": price[alive],
        "available": available,
    })


def _profiles(world: _World, day: int) -> pd.DataFrame:
    alive = np.flatnonzero(world.user_birth <= day)
    per = np.random.default_rng(11)
    k = len(world.user_cluster)
    age = np.clip(per.normal(35, 12, k), 14, 90).round()
    occ = (world.user_cluster + per.integers(0, 3, k)) % len(OCCUPATIONS)
    return pd.DataFrame({
        "user_id": [f"u{u}" for u in alive],
        "age": age[alive].astype(int),
        "gender": np.where(per.random(k) < 0.5, "f", "m")[alive],
        "occupation": np.asarray(OCCUPATIONS)[occ[alive]],
        "region": np.asarray(REGIONS)[per.integers(0, len(REGIONS), k)[alive]],
    })


def _sample_items(rng, world: _World, users: np.ndarray, day: int, taste: float) -> np.ndarray:
    """Items for events: mostly from the user's cluster, by drifting popularity."""
    alive = world.item_birth <= day
    weights = np.exp(world.item_pop) * alive
    out = np.empty(len(users), dtype=np.int64)
    own = rng.random(len(users)) < taste
    glob_cdf = np.cumsum(weights) / weights.sum()
    others = np.flatnonzero(~own)
    out[others] = np.searchsorted(glob_cdf, rng.random(len(others)), side="right")
    for c in np.unique(world.user_cluster[users[own]]):
        rows = np.flatnonzero(own & (world.user_cluster[users] == c))
        members = np.flatnonzero((world.item_cluster == c) & alive)
        if len(members) == 0:
            out[rows] = np.searchsorted(glob_cdf, rng.random(len(rows)), side="right")
            continue
        cdf = np.cumsum(weights[members]) / weights[members].sum()
        out[rows] = members[np.searchsorted(cdf, rng.random(len(rows)), side="right")]
    return np.minimum(out, len(weights) - 1)


def _events(rng, world: _World, day: int, day_start: int, n: int, first_id: int,
            bot_events: int) -> pd.DataFrame:
    """``n`` clean events of one day as strings, in the raw-log contract."""
    alive = np.flatnonzero(world.user_birth <= day)
    p = world.user_activity[alive] / world.user_activity[alive].sum()
    users = alive[np.searchsorted(np.cumsum(p), rng.random(n), side="right").clip(max=len(alive) - 1)]
    if bot_events:
        users[:bot_events] = alive[0]  # one scraper-like user hammering the site
    items = _sample_items(rng, world, users, day, taste=0.8)
    etype = rng.choice(len(EVENT_TYPES), size=n, p=EVENT_PROBS)
    match = world.item_cluster[items] == world.user_cluster[users]
    rating = np.clip(np.round((3.0 + 1.2 * match + rng.normal(0, 0.8, n)) * 2) / 2, 1.0, 5.0)
    qty = rng.integers(1, 4, n)
    value = np.where(etype == 4, rating.astype(str), np.where(etype == 3, qty.astype(str), ""))
    secs = day_start + rng.integers(0, 86400, n)
    # Producers disagree on ts formats: ISO with Z, ISO with offset, epoch s, epoch ms.
    style = rng.integers(0, 4, n)
    iso = np.datetime_as_string(secs.astype("datetime64[s]"), unit="s")
    ts = np.where(style == 0, np.char.add(iso, "Z"),
                  np.where(style == 1, np.char.add(iso, "+00:00"),
                           np.where(style == 2, secs.astype(str), (secs * 1000).astype(str))))
    return pd.DataFrame({
        "event_id": np.char.add(f"e{day:04d}-", (first_id + np.arange(n)).astype(str)),
        "user_id": np.char.add("u", users.astype(str)),
        "item_id": np.char.add("i", items.astype(str)),
        "event_type": np.asarray(EVENT_TYPES)[etype],
        "value": value,
        "ts": ts,
    })


def _inject_internal(rng, df: pd.DataFrame, internal_users: tuple[str, ...], rate: float) -> None:
    """Hand ``rate`` of the rows (in place) to internal/test accounts: QA clicking through the site."""
    if not internal_users or rate <= 0:
        return
    rows = np.flatnonzero(rng.random(len(df)) < rate)
    who = np.asarray(internal_users, dtype=object)[rng.integers(0, len(internal_users), len(rows))]
    df.iloc[rows, df.columns.get_loc("user_id")] = who


def _inject_bad(rng, df: pd.DataFrame, rate: float, day_start: int, fmt: str
                ) -> tuple[pd.DataFrame, np.ndarray, dict, np.ndarray]:
    """Break ``rate`` of the rows, every kind in turn.

    Returns (df, malformed-row mask, counts per kind, indices of the broken rows).
    """
    n = len(df)
    bad = np.flatnonzero(rng.random(n) < rate)
    kinds = rng.integers(0, len(BAD_KINDS), len(bad))
    counts = {k: 0 for k in BAD_KINDS}
    malformed = np.zeros(n, dtype=bool)
    for k, name in enumerate(BAD_KINDS):
        rows = bad[kinds == k]
        if name == "malformed_row" and fmt == "parquet":
            name, rows = "bad_value", rows  # Parquet is typed: it cannot carry a broken row
        counts[name] += len(rows)
        if not len(rows):
            continue
        col = df.columns.get_loc
        if name == "malformed_row":
            malformed[rows] = True
        elif name == "missing_id":
            df.iloc[rows, col(("event_id", "user_id", "item_id")[k % 3])] = ""
        elif name == "malformed_id":
            df.iloc[rows, col("item_id")] = "bad\x07item"  # a control character
        elif name == "unknown_event_type":
            df.iloc[rows, col("event_type")] = "hover"
        elif name == "bad_ts":
            df.iloc[rows, col("ts")] = "yesterday-ish"
        elif name == "ts_out_of_window":
            df.iloc[rows, col("ts")] = str(day_start - 10 * 86400)
        else:
            df.iloc[rows, col("event_type")] = "rating"
            df.iloc[rows, col("value")] = "11"
    return df, malformed, counts, bad


def _write_text(df: pd.DataFrame, malformed: np.ndarray, path: Path, fmt: str) -> None:
    if fmt == "jsonl":
        body = df.replace({"": None}).to_json(orient="records", lines=True)
        lines = body.rstrip("\n").split("\n") if len(df) else []
        for i in np.flatnonzero(malformed):
            lines[i] = lines[i][: len(lines[i]) // 2]  # truncated mid-record
        text = "\n".join(lines) + "\n"
    else:
        lines = df.to_csv(index=False, lineterminator="\n").rstrip("\n").split("\n")
        for i in np.flatnonzero(malformed):
            lines[i + 1] += ",extra,columns"  # wrong number of columns
        text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    # A typed producer: epoch-millisecond ts and numeric value; unparseable text becomes null.
    ts = pd.to_numeric(df["ts"], errors="coerce")
    iso = ts.isna() & df["ts"].str.contains("T", regex=False)
    ts[iso] = pd.to_datetime(df["ts"][iso], utc=True, format="ISO8601").astype("int64") // 10**6
    ts = ts.where(ts > 1e11, ts * 1000)
    table = pa.table({
        **{c: pa.array(df[c].replace({"": None}), pa.string()) for c in ("event_id", "user_id", "item_id", "event_type")},
        "value": pa.array(pd.to_numeric(df["value"], errors="coerce"), pa.float64()),
        "ts": pa.array(ts, pa.int64(), from_pandas=True),
    })
    pq.write_table(table, path)


def generate_landing(
    landing: Path | str,
    start_ds: str,
    days: int,
    *,
    seed: int = 42,
    n_users: int = 1000,
    n_items: int = 500,
    events_per_day: int = 5000,
    bad_row_rate: float = 0.02,
    duplicate_rate: float = 0.01,
    new_users_per_day: int | None = None,
    new_items_per_day: int | None = None,
    n_clusters: int = 8,
    bot_events_per_day: int = 0,
    internal_users: tuple[str, ...] = (),
    internal_rate: float = 0.0,
    chunk_size: int = 500_000,
    formats: tuple[str, ...] = FORMATS,
) -> dict:
    """Write ``days`` days of synthetic logs from ``start_ds`` under ``landing``; return counts.

    Layout: ``interactions/ds=D/part-NNNNN.{jsonl,csv,parquet}[.gz]``, ``items/ds=D/items.jsonl``,
    ``users/ds=D/users.csv``. The same arguments always write the same bytes.

    ``internal_users`` (pass ``clean.internal_users`` of the config) take ``internal_rate`` of
    the events; they are drawn from a stream of their own, so every other byte is the same as
    without them. ``report["internal_events"]`` counts the internal rows that break no earlier
    rule: exactly the rows the clean step files under ``internal_user``.
    """
    if internal_rate and not internal_users:
        raise ValueError("internal_rate > 0 needs internal_users (e.g. clean.internal_users)")
    landing, start = Path(landing), parse_ds(start_ds)
    rng = np.random.default_rng(seed)
    internal_rng = np.random.default_rng([seed, 1])
    new_u = max(1, n_users // 50) if new_users_per_day is None else new_users_per_day
    new_i = max(1, n_items // 100) if new_items_per_day is None else new_items_per_day
    world = _world(rng, n_users, n_items, days, new_u, new_i, n_clusters)
    report = {"days": [], "bad_rows": {k: 0 for k in BAD_KINDS}, "duplicates": 0, "events": 0,
              "internal_events": 0}
    for day in range(days):
        ds = (start + dt.timedelta(days=day)).isoformat()
        day_start = int(dt.datetime.combine(start + dt.timedelta(days=day), dt.time(),
                                            tzinfo=dt.timezone.utc).timestamp())
        world.item_pop += rng.normal(0, 0.1, len(world.item_pop))  # daily drift
        out = landing / "interactions" / f"ds={ds}"
        out.mkdir(parents=True, exist_ok=True)
        n_chunks = max(len(formats), -(-events_per_day // chunk_size))
        sizes = np.diff(np.linspace(0, events_per_day, n_chunks + 1).astype(int))
        written = 0
        for k, size in enumerate(sizes):
            fmt = formats[k % len(formats)]
            df = _events(rng, world, day, day_start, int(size), written,
                         bot_events_per_day if k == 0 else 0)
            written += int(size)
            _inject_internal(internal_rng, df, tuple(internal_users), internal_rate)
            dups = df.iloc[np.flatnonzero(rng.random(len(df)) < duplicate_rate)]
            df = pd.concat([df, dups], ignore_index=True)
            df, malformed, counts, broken = _inject_bad(rng, df, bad_row_rate, day_start, fmt)
            internal = df["user_id"].isin(internal_users).to_numpy()
            internal[broken] = False  # a broken row is filed under the rule it breaks first
            report["internal_events"] += int(internal.sum())
            gz = fmt != "parquet" and (k // len(formats)) % 2 == 1
            path = out / f"part-{k:05d}.{fmt}{'.gz' if gz else ''}"
            _write_parquet(df, path) if fmt == "parquet" else _write_text(df, malformed, path, fmt)
            for name, c in counts.items():
                report["bad_rows"][name] += c
            report["duplicates"] += len(dups)
            report["events"] += len(df)
        _write_side(landing, ds, world, day, rng, n_clusters)
        report["days"].append(ds)
    return report


def _write_side(landing: Path, ds: str, world: _World, day: int, rng, n_clusters: int) -> None:
    items = landing / "items" / f"ds={ds}"
    users = landing / "users" / f"ds={ds}"
    items.mkdir(parents=True, exist_ok=True)
    users.mkdir(parents=True, exist_ok=True)
    _catalog(rng, world, day, n_clusters).to_json(items / "items.jsonl", orient="records", lines=True)
    _profiles(world, day).to_csv(users / "users.csv", index=False)
