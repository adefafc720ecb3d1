"""The distributed scoring path: an Arrow map over partitions of users, item vectors broadcast.

Each task scores its users with the same :class:`~recsys.score.topn.FactorizedScorer` as the
single-node path (so the two agree exactly), one torch thread per task because Spark already
runs one task per core. Cold-start users are few and need the whole training set, so the driver
writes their rows with the single-node writer into the same folder. Executors need the
``recsys`` package installed (it is imported inside the tasks).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys.config import ScoreConfig
from recsys.score._sink import SOURCE_MODEL, Provenance
from recsys.score.engine import Bundle, ScoringData, _ColdStart, make_plan, scored_items
from recsys.score.topn import FactorizedScorer

_MAP_SCHEMA = T.StructType([
    T.StructField("user_id", T.StringType(), False),
    T.StructField("rank", T.IntegerType(), False),
    T.StructField("item_id", T.StringType(), False),
    T.StructField("score", T.FloatType(), False),
])


def _users_table(plan, data: ScoringData, user_vectors: np.ndarray, exclude_seen: bool) -> pa.Table:
    """Warm users in id order: user_id, their vector and their seen items as scored columns."""
    users = plan.order[plan.warm[plan.order]]
    seen = plan.seen[users]
    cols = plan.seen_cols[seen.indices] if exclude_seen else np.empty(0, np.int64)
    if exclude_seen:
        # Items the scorer does not score (-1) cannot be recommended: drop them from the mask.
        keep = cols >= 0
        row_of = np.repeat(np.arange(len(users)), np.diff(seen.indptr))
        counts = np.bincount(row_of[keep], minlength=len(users))
        offsets = np.r_[0, np.cumsum(counts)].astype(np.int32)
        cols = cols[keep]
    else:
        offsets = np.zeros(len(users) + 1, np.int32)
    vecs = np.ascontiguousarray(user_vectors[plan.model_user[users]], np.float32)
    f = vecs.shape[1]
    return pa.table({
        "user_id": pa.array(np.asarray(data.user_ids)[users].astype(str)),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), f),
        "seen": pa.ListArray.from_arrays(pa.array(offsets), pa.array(cols.astype(np.int64))),
    })


def _map_topn(item_vectors, items, item_ids, n: int):
    """The per-partition function for ``mapInArrow`` (captures only broadcasts and plain values)."""

    def run(batches):
        import torch

        torch.set_num_threads(1)
        scorer = FactorizedScorer(np.zeros((0, item_vectors.value.shape[1]), np.float32),
                                  item_vectors.value, items=items.value)
        vocab = pa.array(item_ids.value)
        for batch in batches:
            b = batch.num_rows
            if not b:
                continue
            vecs = batch.column("vector").flatten().to_numpy().reshape(b, -1)
            seen = batch.column("seen")
            lengths = np.diff(seen.offsets.to_numpy())
            rows = np.repeat(np.arange(b, dtype=np.int64), lengths)
            cols = seen.flatten().to_numpy().astype(np.int64)
            top, scores = scorer.topn_vectors(vecs, n, rows, cols)
            valid = (top >= 0).ravel()
            yield pa.RecordBatch.from_arrays([
                pa.array(np.repeat(batch.column("user_id").to_numpy(zero_copy_only=False), n)[valid]),
                pa.array(np.tile(np.arange(1, n + 1, dtype=np.int32), b)[valid]),
                vocab.take(pa.array(top.ravel()[valid])),
                pa.array(scores.ravel()[valid], pa.float32()),
            ], names=_MAP_SCHEMA.names)

    return run


def topn_dataframe(spark: SparkSession, bundle: Bundle, data: ScoringData, provenance: Provenance,
                   options: ScoreConfig, partitions: int | None = None) -> tuple[DataFrame, Any]:
    """The model rows as a DataFrame with the published columns, plus the plan (for cold start)."""
    model = bundle.model
    if not model.factorized:
        raise ValueError(f"score.engine=spark needs a factorized model; {model.name} is not "
                         "(use score.engine=local, which re-ranks candidates)")
    items = scored_items(bundle, data, options)
    probe = FactorizedScorer(np.zeros((0, 1), np.float32), np.zeros((model.n_items, 1), np.float32),
                             items=items)
    plan = make_plan(bundle, data, options, probe.col_map)
    users = _users_table(plan, data, model.user_vectors(), options.exclude_seen)
    df = spark.createDataFrame(users)
    if partitions:
        df = df.coalesce(partitions)
    sc = spark.sparkContext
    fn = _map_topn(sc.broadcast(np.asarray(model.item_vectors(), np.float32)), sc.broadcast(items),
                   sc.broadcast(np.asarray(bundle.item_ids).astype(str)), options.top_n)
    p = provenance
    out = (df.mapInArrow(fn, _MAP_SCHEMA)
           .withColumn("source", F.lit(SOURCE_MODEL))
           .withColumn("model_name", F.lit(p.model_name))
           .withColumn("model_version", F.lit(p.model_version))
           .withColumn("mlflow_run_id", F.lit(p.mlflow_run_id))
           .withColumn("generated_at", F.lit(p.generated_at).cast("timestamp")))
    return out, plan


def _write(spark: SparkSession, df: DataFrame, out_dir: Path) -> None:
    # Spark's default INT96 timestamps read back as timestamp[ns] without a zone; the published
    # schema is timestamp[us, UTC], i.e. Parquet TIMESTAMP_MICROS adjusted to UTC.
    key = "spark.sql.parquet.outputTimestampType"
    before = spark.conf.get(key, None)
    spark.conf.set(key, "TIMESTAMP_MICROS")
    try:
        df.write.mode("overwrite").parquet(str(out_dir))
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)


def write_topn_spark(spark: SparkSession, bundle: Bundle, data: ScoringData, provenance: Provenance,
                     out_dir: Path, options: ScoreConfig) -> dict[str, Any]:
    """Spark counterpart of :func:`recsys.score.engine.write_topn` (same rows, several files)."""
    from recsys.score._sink import CONTENT, POPULAR, BatchBuilder, Block, ParquetSink

    t0 = time.perf_counter()
    df, plan = topn_dataframe(spark, bundle, data, provenance, options)
    # The input is in user-id order and the map keeps it: part files come out sorted, no shuffle.
    _write(spark, df, out_dir)
    cold_users = plan.order[~plan.warm[plan.order]]
    n = options.top_n
    items, scores = np.full((len(cold_users), n), -1, np.int64), np.full((len(cold_users), n), -np.inf, np.float32)
    source = np.zeros(len(cold_users), np.int8)
    if len(cold_users):
        cold = _ColdStart(bundle, data, plan, n, scored_items(bundle, data, options),
                          offset=len(bundle.item_ids))
        cold.fill(cold_users, items, scores, source)
        vocab = np.concatenate([np.asarray(bundle.item_ids).astype(str), np.asarray(data.item_ids).astype(str)])
        with ParquetSink(Path(out_dir) / "part-cold-00000.parquet",
                         BatchBuilder(data.user_ids, vocab, provenance)) as sink:
            sink.put(Block(cold_users, items, scores, source))
    warm = int(plan.warm.sum())
    return {"engine": "spark", "users": warm + len(cold_users), "users_model": warm,
            "users_popular": int((source == POPULAR).sum()), "users_content": int((source == CONTENT).sum()),
            "seconds": round(time.perf_counter() - t0, 3), "options": options.__dict__}
