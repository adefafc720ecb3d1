"""Side inputs of the clean step: the item catalog and user profiles.

Landing layout: ``<landing>/items/ds=D/`` and ``<landing>/users/ds=D/``, any mix of JSON Lines,
CSV (header) and Parquet, like the interaction logs. They are small dimension tables, so they are
read with Spark's own readers and normalized to a fixed schema; rows without a valid id are
dropped and counted (``rejected``), and an id seen twice keeps the row from the last file.

Item catalog: ``item_id, title, genres (list), tags (list), year, price, available, description``.
In CSV, ``genres``/``tags`` are ``|``-separated. A missing ``available`` means true.
User profiles: ``user_id, age, gender, occupation, region``.
"""
from __future__ import annotations

from pathlib import Path

from pyspark.sql import Column, DataFrame, Observation, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys.etl import landing
from recsys.etl.clean import canonical_id, id_matches
from recsys.schema import ITEM_CATALOG, USER_PROFILES

LIST_COLUMNS = ("genres", "tags")


def read_side_input(spark: SparkSession, folder: Path) -> DataFrame | None:
    """All rows of one side-input partition, columns as the producers named them (or None)."""
    if not folder.is_dir():
        return None
    parts = []
    for f in discover_side(folder):
        path = str(f.path)
        if f.format == "json":
            df = spark.read.json(path)
        elif f.format == "csv":
            df = spark.read.csv(path, header=True, inferSchema=False)
        else:
            df = spark.read.parquet(path)
        parts.append(df.withColumn("_file", F.lit(f.path.name)))
    if not parts:
        return None
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p, allowMissingColumns=True)
    return out


def discover_side(folder: Path):
    """Data files of a side-input folder (no column contract beyond the id)."""
    files = []
    for path in sorted(p for p in folder.iterdir() if landing.is_data_file(p)):
        fmt = landing.file_format(path)
        if path.stat().st_size:
            files.append(landing.LandingFile(path, fmt))
    return files


def _list_column(df: DataFrame, name: str) -> Column:
    if name not in df.columns:
        return F.lit(None).cast("array<string>")
    col = F.col(name)
    if isinstance(df.schema[name].dataType, T.ArrayType):
        arr = col.cast("array<string>")
    else:  # CSV and flat producers: "a|b|c"
        arr = F.split(col.cast("string"), r"\|")
    return F.filter(F.transform(arr, lambda x: F.trim(x)), lambda x: x != "")


def _scalar(df: DataFrame, name: str, typ: str) -> Column:
    if name not in df.columns:
        return F.lit(None).cast(typ)
    if isinstance(df.schema[name].dataType, (T.ArrayType, T.MapType, T.StructType)):
        return F.lit(None).cast(typ)
    return F.expr(f"try_cast(`{name}` AS {typ.upper()})")


def _latest_per_id(df: DataFrame, key: str) -> DataFrame:
    w = Window.partitionBy(key).orderBy(F.col("_file").desc())
    return df.withColumn("_n", F.row_number().over(w)).where("_n = 1").drop("_n")


def _valid_id(col: Column, pattern: str) -> Column:
    return col.isNotNull() & id_matches(col, pattern)


def _split(out: DataFrame, key: str, id_pattern: str, observation: Observation | None,
           names: list[str]) -> tuple[DataFrame, DataFrame]:
    out = out.withColumn(key, canonical_id(key))  # "42.0" is user 42, as in the interactions
    ok = _valid_id(F.col(key), id_pattern)
    if observation is not None:  # counted by the write of the good rows: no extra pass
        out = out.observe(observation, F.count_if(~ok | F.col(key).isNull()).alias("rejected"))
    return _latest_per_id(out.where(ok), key).select(*names), out.where(~ok | F.col(key).isNull())


def clean_items(df: DataFrame, id_pattern: str,
                observation: Observation | None = None) -> tuple[DataFrame, DataFrame]:
    """(catalog rows in ITEM_CATALOG, rejected rows) from a raw item-catalog frame.

    With ``observation``, the action that evaluates the catalog rows also counts the rejected
    ones (metric ``rejected``).
    """
    out = df.select(
        F.trim(_scalar(df, "item_id", "string")).alias("item_id"),
        _scalar(df, "title", "string").alias("title"),
        *[_list_column(df, c).alias(c) for c in LIST_COLUMNS],
        _scalar(df, "year", "double").alias("year"),
        _scalar(df, "price", "double").alias("price"),
        F.coalesce(_scalar(df, "available", "boolean"), F.lit(True)).alias("available"),
        _scalar(df, "description", "string").alias("description"),
        "_file",
    )
    return _split(out, "item_id", id_pattern, observation, ITEM_CATALOG.names)


def clean_users(df: DataFrame, id_pattern: str,
                observation: Observation | None = None) -> tuple[DataFrame, DataFrame]:
    """(profile rows in USER_PROFILES, rejected rows) from a raw user-profile frame (as
    :func:`clean_items`)."""
    out = df.select(
        F.trim(_scalar(df, "user_id", "string")).alias("user_id"),
        _scalar(df, "age", "double").alias("age"),
        *[F.lower(F.trim(_scalar(df, c, "string"))).alias(c) for c in ("gender", "occupation", "region")],
        "_file",
    )
    return _split(out, "user_id", id_pattern, observation, USER_PROFILES.names)
