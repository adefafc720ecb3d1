"""Pure transforms from clean interactions (+ side inputs) to the training set.

* ``aggregate_pairs``: one row per (user, item): summed weight, latest explicit rating, latest ts;
* ``index_map``: dense 0..n-1 indices, ids sorted (deterministic across re-runs);
* ``item_features`` / ``user_features``: numeric columns per index: multi-hot categories,
  standardized numerics, hashed text tokens, and the items' ``available`` flag.
"""
from __future__ import annotations

import re

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recsys.schema import TRAINING_ROWS


def dedupe_events(clean: DataFrame) -> DataFrame:
    """One row per event_id across days (a late resend keeps the earliest copy)."""
    w = Window.partitionBy("event_id").orderBy("ts", "ds")
    return clean.withColumn("_n", F.row_number().over(w)).where("_n = 1").drop("_n")


def aggregate_pairs(events: DataFrame, min_weight: float = 0.0) -> DataFrame:
    """(user_id, item_id, weight, rating, ts): weight summed, rating = latest explicit, ts = latest."""
    rating_ts = F.when(F.col("event_type") == "rating", F.struct("ts", "value"))
    pairs = events.groupBy("user_id", "item_id").agg(
        F.sum("weight").alias("weight"),
        F.max(rating_ts).alias("_rating"),  # structs compare by ts first: the latest rating
        F.max("ts").alias("ts"),
    )
    return pairs.where(F.col("weight") >= min_weight).select(
        "user_id", "item_id", "weight", F.col("_rating.value").alias("rating"), "ts")


def index_map(ids: DataFrame, id_col: str, idx_col: str) -> DataFrame:
    """Dense indices 0..n-1 over the distinct ids, in sorted id order."""
    distinct = ids.select(id_col).where(F.col(id_col).isNotNull()).distinct()
    # A global order needs one partition; id maps are small next to the interaction log.
    w = Window.orderBy(id_col)
    return distinct.select((F.row_number().over(w) - 1).cast("int").alias(idx_col), id_col)


def training_rows(pairs: DataFrame, user_map: DataFrame, item_map: DataFrame) -> DataFrame:
    """Pairs with indices instead of ids, in schema.TRAINING_ROWS."""
    out = pairs.join(user_map, "user_id").join(item_map, "item_id")
    return out.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in TRAINING_ROWS.fields])


def slug(value: str) -> str:
    """A column-name-safe form of a category value."""
    return re.sub(r"[^0-9a-z]+", "_", value.lower()).strip("_") or "x"


def onehot(col: Column, values: list[str], prefix: str, is_array: bool = False) -> list[Column]:
    """One float column per value (``prefix_<slug>``; slugs made unique when two values collide)."""
    out, seen = [], set()
    for v in values:
        name = f"{prefix}_{slug(v)}"
        while name in seen:
            name += "_"
        seen.add(name)
        hit = F.array_contains(F.coalesce(col, F.array()), v) if is_array else (col == v)
        out.append(hit.cast("float").alias(name))
    return out


def top_values(df: DataFrame, col: Column, limit: int) -> list[str]:
    """The ``limit`` most frequent non-null values of ``col`` (ties by value), for one-hot columns."""
    rows = (df.select(col.alias("v")).where(F.col("v").isNotNull() & (F.col("v") != ""))
            .groupBy("v").count().orderBy(F.desc("count"), "v").limit(limit).collect())
    return sorted(r["v"] for r in rows)


def _standardized(df: DataFrame, name: str) -> Column:
    stats = df.agg(F.avg(name).alias("m"), F.stddev_pop(name).alias("s")).first()
    mean, std = stats["m"] or 0.0, stats["s"] or 0.0
    scaled = (F.col(name) - mean) / (std if std > 0 else 1.0)
    return F.coalesce(scaled, F.lit(0.0))  # missing = the mean


def _tokens(df: DataFrame) -> Column:
    text = F.concat_ws(" ", F.coalesce("title", F.lit("")), F.coalesce("description", F.lit("")),
                       F.array_join(F.coalesce("tags", F.array()), " "))
    words = F.split(F.lower(text), r"[^\p{L}\p{N}]+")
    return F.filter(words, lambda w: F.length(w) > 1)


def item_features(items: DataFrame, item_map: DataFrame, max_categories: int,
                  hash_buckets: int) -> DataFrame:
    """item_idx, available, genre_* multi-hot, year/price standardized, txt_* hashed token counts.

    Items known only from interactions get zeros and ``available`` = true (nothing says otherwise).
    """
    genres = top_values(items, F.explode("genres"), max_categories)
    cols = onehot(F.col("genres"), genres, "genre", is_array=True)
    cols += [_standardized(items, c).cast("float").alias(c) for c in ("year", "price")]
    if hash_buckets:
        bucket = lambda w: F.pmod(F.xxhash64(w), F.lit(hash_buckets))  # noqa: E731
        toks = F.transform(_tokens(items), bucket)
        cols += [F.size(F.filter(toks, lambda b, k=k: b == k)).cast("float").alias(f"txt_{k}")
                 for k in range(hash_buckets)]
    feats = items.select("item_id", "available", *cols)
    out = item_map.join(feats, "item_id", "left").drop("item_id")
    names = [c for c in out.columns if c not in ("item_idx", "available")]
    return out.select("item_idx", F.coalesce("available", F.lit(True)).alias("available"),
                      *[F.coalesce(F.col(f"`{c}`"), F.lit(0.0)).cast("float").alias(c) for c in names])


def user_features(users: DataFrame, user_map: DataFrame, max_categories: int) -> DataFrame:
    """user_idx, age standardized, one-hot gender/occupation/region (top values per attribute)."""
    cols = [_standardized(users, "age").cast("float").alias("age")]
    for attr in ("gender", "occupation", "region"):
        cols += onehot(F.col(attr), top_values(users, F.col(attr), max_categories), attr)
    feats = users.select("user_id", *cols)
    out = user_map.join(feats, "user_id", "left").drop("user_id")
    names = [c for c in out.columns if c != "user_idx"]
    return out.select("user_idx", *[F.coalesce(F.col(f"`{c}`"), F.lit(0.0)).cast("float").alias(c)
                                    for c in names])
