"""The one place that names tables, columns and their Spark/Arrow types.

Spark types are built on demand (``schema.CLEAN_INTERACTIONS`` imports pyspark on first use), so
the torch- and Spark-free parts of the library (publish, the training-set reader) can import the
names without loading pyspark.
"""
from __future__ import annotations

import functools
from typing import Any

import pyarrow as pa

# Table names: folders under the warehouse root, each partitioned by `ds`.
INTERACTIONS = "interactions"
QUARANTINE = "quarantine"
TRAINING_SET = "training_set"
RECOMMENDATIONS = "recommendations"
# Writers stage tables here before an atomic publish; the leading `_` hides it from Hive-style
# partition discovery (Spark, DuckDB, pyarrow).
STAGING = "_staging"
ITEMS = "items"
USERS = "users"
# A factorized model version's vectors, keyed by external id, for the Spark scorer's executors:
# <warehouse>/model_vectors/model=<registered name>/version=<v>/{users,items}/*.parquet.
# Not partitioned by `ds`: one write-once folder per registered model version.
MODEL_VECTORS = "model_vectors"
# The tombstone of `recsys forget`: one row per erased user, a keyed hash of the id (never the
# id), so that the clean step can quarantine later raw logs of that user (reason erased_user).
# Not partitioned: append-only files <warehouse>/erasures/part-*.parquet. See docs/privacy.md.
ERASURES = "erasures"

DS = "ds"
DS_FORMAT = "%Y-%m-%d"

# Raw-log contract: the fields producers send. Everything else is kept in `raw` for quarantine.
RAW_FIELDS = ("event_id", "user_id", "item_id", "event_type", "value", "ts")

_SPARK_SCHEMAS = ('CLEAN_INTERACTIONS', 'QUARANTINE_ROWS', 'TRAINING_ROWS', 'USER_MAP', 'ITEM_MAP', 'ITEM_CATALOG', 'USER_PROFILES')


@functools.cache
def _spark_schemas() -> dict[str, Any]:
    from pyspark.sql import types as T

    # Clean interactions, one row per distinct event_id.
    CLEAN_INTERACTIONS = T.StructType(
        [
            T.StructField("event_id", T.StringType(), False),
            T.StructField("user_id", T.StringType(), False),
            T.StructField("item_id", T.StringType(), False),
            T.StructField("event_type", T.StringType(), False),
            T.StructField("value", T.DoubleType(), True),
            T.StructField("weight", T.DoubleType(), False),
            T.StructField("ts", T.TimestampType(), False),
        ]
    )

    # Rejected rows: the raw record as text plus a reason code from QuarantineReason.
    QUARANTINE_ROWS = T.StructType(
        [
            T.StructField("reason", T.StringType(), False),
            T.StructField("source_file", T.StringType(), True),
            T.StructField("raw", T.StringType(), True),
            # raw_b64: the record's bytes (base64) when they are not valid UTF-8 (raw then has
            # U+FFFD in their place).
            T.StructField("raw_b64", T.StringType(), True),
        ]
    )

    # Training set: dense integer indices (0..n-1) plus the maps back to external ids.
    TRAINING_ROWS = T.StructType(
        [
            T.StructField("user_idx", T.IntegerType(), False),
            T.StructField("item_idx", T.IntegerType(), False),
            T.StructField("weight", T.FloatType(), False),
            T.StructField("rating", T.FloatType(), True),
            T.StructField("ts", T.TimestampType(), False),
        ]
    )
    USER_MAP = T.StructType(
        [T.StructField("user_idx", T.IntegerType(), False), T.StructField("user_id", T.StringType(), False)]
    )
    ITEM_MAP = T.StructType(
        [T.StructField("item_idx", T.IntegerType(), False), T.StructField("item_id", T.StringType(), False)]
    )

    # Side inputs, as the clean step writes them to the `items` and `users` tables.
    ITEM_CATALOG = T.StructType([
        T.StructField("item_id", T.StringType(), False),
        T.StructField("title", T.StringType(), True),
        T.StructField("genres", T.ArrayType(T.StringType()), True),
        T.StructField("tags", T.ArrayType(T.StringType()), True),
        T.StructField("year", T.DoubleType(), True),
        T.StructField("price", T.DoubleType(), True),
        T.StructField("available", T.BooleanType(), False),
        T.StructField("description", T.StringType(), True),
    ])
    USER_PROFILES = T.StructType([
        T.StructField("user_id", T.StringType(), False),
        T.StructField("age", T.DoubleType(), True),
        T.StructField("gender", T.StringType(), True),
        T.StructField("occupation", T.StringType(), True),
        T.StructField("region", T.StringType(), True),
    ])
    return {name: value for name, value in locals().items() if name in _SPARK_SCHEMAS}


def __getattr__(name: str) -> Any:
    # Module-level attribute hook (PEP 562): the Spark StructTypes, built on first access.
    if name in _SPARK_SCHEMAS:
        return _spark_schemas()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The published top-N table: the product warehouse consumers read.
RECOMMENDATIONS_ARROW = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("mlflow_run_id", pa.string(), nullable=False),
        pa.field("generated_at", pa.timestamp("us", tz="UTC"), nullable=False),
        # Why this row: up to MAX_BECAUSE item ids from the user's own history that most support
        # it (model and fold_in rows; empty for cold-start rows), and the kind of reason
        # (BECAUSE_* below). See docs/tables.md, "Why an item is recommended".
        pa.field("because", pa.list_(pa.field("element", pa.string(), nullable=False)), nullable=False),
        pa.field("because_reason", pa.string(), nullable=False),
    ]
)
# `ds` is the partition column: it lives in the folder name, not in the files.
RECOMMENDATION_COLUMNS = tuple(RECOMMENDATIONS_ARROW.names) + (DS,)

# The two tables of a model_vectors version (subfolders ``USERS``/``ITEMS``): the id and the
# vector the model scores with (every row has the version's `factors` floats, no nulls).
VECTOR = "vector"
USER_VECTORS_ARROW = pa.schema([pa.field("user_id", pa.string(), nullable=False),
                                pa.field(VECTOR, pa.list_(pa.field("element", pa.float32(), nullable=False)),
                                         nullable=False)])
ITEM_VECTORS_ARROW = pa.schema([pa.field("item_id", pa.string(), nullable=False),
                                USER_VECTORS_ARROW.field(VECTOR)])

# The tombstone table (ERASURES): ``user_key`` = hex SHA-256 of the erasure key and the canonical
# user id (recsys.etl.erasures.user_key), ``key_id`` = which key made it (a fingerprint, not the key).
ERASURES_ARROW = pa.schema([
    pa.field("user_key", pa.string(), nullable=False),
    pa.field("key_id", pa.string(), nullable=False),
    pa.field("erased_at", pa.timestamp("us", tz="UTC"), nullable=False),
])

# Values of the `source` column: which path produced a row.
SOURCE_MODEL = "model"
SOURCE_POPULAR = "popular"
SOURCE_CONTENT = "content"
# A user the model was not trained on, scored from their history without retraining (fold-in).
SOURCE_FOLD_IN = "fold_in"
SOURCES = (SOURCE_MODEL, SOURCE_POPULAR, SOURCE_CONTENT, SOURCE_FOLD_IN)

# Values of `because_reason`: `history` (the row's `because` items, from the user's history,
# support it), `popular` (cold start: among the most-interacted items of the training window),
# `profile` (cold start: the hybrid model's guess from the user's features).
BECAUSE_HISTORY = "history"
BECAUSE_POPULAR = "popular"
BECAUSE_PROFILE = "profile"
MAX_BECAUSE = 3
