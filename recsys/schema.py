"""The one place that names tables, columns and their Spark/Arrow types."""
from __future__ import annotations

import pyarrow as pa
from pyspark.sql import types as T

# Table names: folders under the warehouse root, each partitioned by `ds`.
INTERACTIONS = "interactions"
QUARANTINE = "quarantine"
TRAINING_SET = "training_set"
RECOMMENDATIONS = "recommendations"
ITEMS = "items"
USERS = "users"

DS = "ds"
DS_FORMAT = "%Y-%m-%d"

# Raw-log contract: the fields producers send. Everything else is kept in `raw` for quarantine.
RAW_FIELDS = ("event_id", "user_id", "item_id", "event_type", "value", "ts")

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

# Rejected rows: the raw record as text plus a reason code from QuarantineReason; raw_b64 holds
# the record's bytes (base64) when they are not valid UTF-8 (raw then has U+FFFD in their place).
QUARANTINE_ROWS = T.StructType(
    [
        T.StructField("reason", T.StringType(), False),
        T.StructField("source_file", T.StringType(), True),
        T.StructField("raw", T.StringType(), True),
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
    ]
)
# `ds` is the partition column: it lives in the folder name, not in the files.
RECOMMENDATION_COLUMNS = tuple(RECOMMENDATIONS_ARROW.names) + (DS,)

# Values of the `source` column: which path produced a row.
SOURCE_MODEL = "model"
SOURCE_POPULAR = "popular"
SOURCE_CONTENT = "content"
