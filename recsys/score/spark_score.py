"""The distributed scoring path: executors read, join and score the users; the driver holds items.

What runs where (:func:`score_warehouse`):

* **executors** read the model version's user vectors (``model_vectors/.../users``, see
  :mod:`recsys.score.vectors`) and the training set of ``ds`` (``interactions``, ``user_map``),
  group each user's seen items, join them to the vectors on ``user_id``, sort by ``user_id``
  and score each partition with the same :class:`~recsys.score.topn.FactorizedScorer` as the
  single-node path (``mapInArrow``, one torch thread per task since Spark runs one task per
  core; blocks of ``block_size`` users); each task writes its rows to one Parquet file with the
  single-node engine's writer and hands Spark back only the file's name. Executors need the
  ``recsys`` package installed (it is imported inside the tasks) and the warehouse mounted at the
  same path as the driver (as every step of this project assumes).
* **the driver** reads only item-sized things (the model's item vectors and ids, today's item
  map and availability) and broadcasts them. Nothing per user passes through it, except the
  **cold-start users** (users with no history, or with history but no vector): Spark finds them
  and the driver collects only those (their ids, the seen items of those with history, the user
  features of those without) plus the per-item user counts of the popular list, then writes
  their rows with the single-node cold-start code (:class:`~recsys.score.engine._ColdStart`), so
  they equal the single-node path's; those with history are folded in
  (:mod:`recsys.score.foldin`, ``source = fold_in``) against the broadcast item vectors. Model
  rows get ``because`` on the executors (:mod:`recsys.score.reasons`), from the same seen lists. Cold users are few (new users since the model's training
  day); a version much older than the training set makes them many, and the driver pays for it.

Output: the same rows as :func:`recsys.score.engine.write_topn`; model rows in
``part-<partition>.parquet``, one per range of user ids, sorted by ``user_id`` (a range shuffle
before scoring), cold-start rows in ``part-cold-00000.parquet``.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys.config import ScoreConfig
from recsys.data.training_set import load_catalog, training_set_path, write_training_set
from recsys.models.base import Recommender
from recsys.schema import USERS, VECTOR
from recsys.score import coldstart, foldin, reasons
from recsys.score._sink import (
    CONTENT,
    FOLD_IN,
    MODEL,
    POPULAR,
    BatchBuilder,
    Block,
    ParquetSink,
    Provenance,
)
from recsys.score.engine import (
    Bundle,
    ScoringData,
    _available,
    _ColdStart,
    scored_items,
)
from recsys.score.rules import Rules
from recsys.score.topn import FactorizedScorer
from recsys.score.vectors import read_info, read_item_vectors, write_bundle_vectors

# What each scoring task returns: the Parquet file it wrote (see :func:`_map_topn`).
_TASK_SCHEMA = T.StructType([
    T.StructField("partition", T.IntegerType(), False),
    T.StructField("path", T.StringType(), False),
    T.StructField("rows", T.LongType(), False),
    T.StructField("users", T.LongType(), False),
])
TASKS_DIR = "_tasks"
COLD_FILE = "part-cold-00000.parquet"


class _Items:
    """The item side, on the driver: the model's items (from the vectors folder) and today's."""

    def __init__(self, warehouse: Path | str, ds: str, vectors: Path, options: ScoreConfig,
                 rules: Rules | None = None) -> None:
        self.item_ids, self.item_vectors = read_item_vectors(vectors)  # the model's, index order
        self.day_ids, self.day_available = load_catalog(warehouse, ds)
        # The single-node helpers take a bundle and a training set; these two hold what they read.
        data = _Catalog(self.day_ids, self.day_available)
        self.scored = scored_items(self, data, options)  # model items that may be recommended
        # Business rules over the model's items, broadcast to the tasks (excluded: never scored).
        self.rules = None if rules is None else rules.bind(self.item_ids)
        if self.rules is not None:
            self.scored = self.rules.restrict(self.scored)
        probe = FactorizedScorer(np.zeros((0, 1), np.float32), np.zeros((len(self.item_ids), 1), np.float32),
                                 items=self.scored)
        model_item = self.item_index(self.day_ids)
        col_map = probe.col_map
        # per item of the day: its column in the scorer, -1 when not scored (never masked then)
        self.seen_cols = model_item if col_map is None else np.where(model_item >= 0, col_map[model_item], -1)
        self.available = _available(data, options)  # per item of the day, for the popular list
        self.day_to_model = model_item  # per item of the day: the model's item index, or -1
        if rules is not None:
            self.available = rules.allowed(self.day_ids, self.available)

    def item_index(self, ids: np.ndarray) -> np.ndarray:
        from recsys.models.bundle import _lookup

        return _lookup(self.item_ids, ids)


class _Catalog:
    def __init__(self, item_ids: np.ndarray, item_available: np.ndarray | None) -> None:
        self.item_ids, self.item_available = item_ids, item_available


def _map_topn(item_vectors, items, item_ids, seen_cols, n: int, block_size: int, exclude_seen: bool,
              provenance: Provenance, tasks_dir: str, day_to_model=None, rules=None):
    """The per-partition function for ``mapInArrow`` (captures only broadcasts and plain values).

    Input rows: ``user_id``, ``vector`` (list<float>), ``seen`` (the day's item_idx list). Each
    task scores blocks of ``block_size`` users and writes their rows itself, with the single-node
    engine's Parquet writer (:class:`~recsys.score._sink.ParquetSink`: the published schema,
    encoded on a background thread), to ``<tasks_dir>/part-<partition>-<attempt id>.parquet``;
    it returns one row naming that file. The driver keeps only the files of the attempts Spark
    reports as successful. (Handing ~100 rows per user back to Spark and writing them with Spark's
    writer took twice the CPU; see docs/benchmarks.md, "Spark scoring".) ``day_to_model``
    (broadcast day item -> model item): when given, rows carry ``because`` (recsys.score.reasons).
    """

    def run(batches):
        import torch
        from pyspark import TaskContext

        torch.set_num_threads(1)
        ctx = TaskContext.get()
        path = f"{tasks_dir}/part-{ctx.partitionId():05d}-{ctx.taskAttemptId()}.parquet"
        vectors = item_vectors.value
        scorer = FactorizedScorer(np.zeros((0, vectors.shape[1]), np.float32), vectors, items=items.value,
                                  rules=None if rules is None else rules.value)
        builder = BatchBuilder(np.empty(0, object), item_ids.value, provenance)
        cols_of = seen_cols.value
        to_model = None if day_to_model is None else day_to_model.value
        support = None if to_model is None else reasons.VectorSupport(vectors)
        f = vectors.shape[1]
        users_done = 0
        with ParquetSink(Path(path), builder) as sink:
            for whole in batches:
                for start in range(0, whole.num_rows, block_size):
                    batch = whole.slice(start, block_size)
                    b = batch.num_rows
                    flat = batch.column(VECTOR).flatten().to_numpy(zero_copy_only=False)
                    if flat.size != b * f:
                        raise ValueError(f"user vectors of {flat.size / max(b, 1):g} floats, the items have {f}")
                    vecs = flat.reshape(b, f).copy()  # Arrow memory is read-only; torch wants writable
                    seen = batch.column("seen")
                    hist_rows = np.repeat(np.arange(b, dtype=np.int64), np.diff(seen.offsets.to_numpy()))
                    hist = seen.flatten().to_numpy().astype(np.int64)
                    if exclude_seen:
                        cols = cols_of[hist]
                        keep = cols >= 0  # items the scorer does not score cannot be recommended
                        rows, cols = hist_rows[keep], cols[keep]
                    else:
                        rows = cols = np.empty(0, np.int64)
                    top, scores = scorer.topn_vectors(vecs, n, rows, cols)
                    why = None if support is None else reasons.because(
                        support, hist_rows, to_model[hist], top, may_overlap=not exclude_seen)
                    sink.put(Block(np.arange(b), top, scores, np.full(b, MODEL, np.int8), why),
                             builder.with_users(batch.column("user_id")))
                    users_done += b
        yield pa.RecordBatch.from_arrays(
            [pa.array([ctx.partitionId()], pa.int32()), pa.array([path]), pa.array([sink.rows], pa.int64()),
             pa.array([users_done], pa.int64())], names=_TASK_SCHEMA.names)

    return run


class _Inputs:
    """The training set of ``ds`` and the version's user vectors as DataFrames (lazy)."""

    def __init__(self, spark: SparkSession, ts_path: Path, vectors: Path, exclude_seen: bool) -> None:
        self.inter = spark.read.parquet(str(ts_path / "interactions")).select("user_idx", "item_idx")
        self.umap = spark.read.parquet(str(ts_path / "user_map")).select("user_idx", "user_id")
        self.vectors = spark.read.parquet(str(vectors / USERS)).select("user_id", VECTOR)
        # Every user's seen items: masked when exclude_seen, and the history `because` reads.
        self.hist = self.inter.groupBy("user_idx").agg(F.collect_list("item_idx").alias("seen"))

    def warm(self, partitions: int) -> DataFrame:
        """user_id, vector, seen: users with history and a vector, in ``partitions`` ranges of
        user_id, each sorted (an explicit count: adaptive execution would merge the ranges by
        bytes, and a few bytes per user here cost a matrix product each)."""
        df = self.hist.join(self.umap, "user_idx").join(self.vectors, "user_id").select("user_id", VECTOR, "seen")
        return df.repartitionByRange(partitions, "user_id").sortWithinPartitions("user_id")

    def cold(self) -> DataFrame:
        """user_idx, user_id, history: users without history or without a vector."""
        keys = self.inter.select("user_idx").distinct().withColumn("_history", F.lit(True))
        has_vector = self.vectors.select("user_id").withColumn("_vector", F.lit(True))
        return (self.umap.join(keys, "user_idx", "left").join(has_vector, "user_id", "left")
                .where(F.col("_history").isNull() | F.col("_vector").isNull())
                .select("user_idx", "user_id", F.col("_history").isNotNull().alias("history")))


def write_model_rows(spark: SparkSession, inputs: _Inputs, items: _Items, provenance: Provenance,
                     options: ScoreConfig, partitions: int, out_dir: Path) -> int:
    """Score the warm users on the executors; their rows end up in ``out_dir/part-<partition>.parquet``
    (one file per range of user ids, sorted by user_id then rank). Returns the number of rows."""
    sc = spark.sparkContext
    tasks_dir = out_dir / TASKS_DIR
    tasks_dir.mkdir(parents=True, exist_ok=True)
    fn = _map_topn(sc.broadcast(items.item_vectors), sc.broadcast(items.scored),
                   sc.broadcast(np.asarray(items.item_ids).astype(str)), sc.broadcast(items.seen_cols),
                   options.top_n, options.block_size, options.exclude_seen, provenance, str(tasks_dir),
                   sc.broadcast(items.day_to_model),
                   None if items.rules is None else sc.broadcast(items.rules))
    done = inputs.warm(partitions).mapInArrow(fn, _TASK_SCHEMA).collect()
    rows = 0
    for task in done:  # one row per partition, from the attempt that succeeded
        if task["rows"]:
            os.rename(task["path"], out_dir / f"part-{task['partition']:05d}.parquet")
        rows += task["rows"]
    shutil.rmtree(tasks_dir)  # empty partitions' files and failed attempts' leftovers
    return rows


def _user_features(spark: SparkSession, ts_path: Path, users: np.ndarray) -> np.ndarray | None:
    """Rows of ``user_features`` for the training-set users ``users`` (zeros where absent), the
    columns ordered as :func:`recsys.data.training_set.load_training_set` orders them."""
    folder = ts_path / "user_features"
    if not folder.is_dir():
        return None
    keys = spark.createDataFrame(pa.table({"user_idx": pa.array(users, pa.int32())}))
    t = spark.read.parquet(str(folder)).join(F.broadcast(keys), "user_idx").toArrow()
    names = sorted(c for c in t.column_names if c != "user_idx")
    out = np.zeros((len(users), len(names)), np.float32)
    pos = np.searchsorted(users, t["user_idx"].to_numpy().astype(np.int64))  # users is sorted
    for j, name in enumerate(names):
        out[pos, j] = pc.fill_null(t[name], 0).to_numpy().astype(np.float32)
    return out


def _write_cold(spark: SparkSession, inputs: _Inputs, items: _Items, ts_path: Path, cold: pa.Table,
                provenance: Provenance, out_dir: Path, options: ScoreConfig,
                content_model: Recommender | Callable[[], Recommender] | None) -> tuple[np.ndarray, int]:
    """Score the collected cold users on the driver (the single-node code); return their sources
    (-1: no row) and the number of rows written."""
    order = np.argsort(np.asarray(cold["user_id"].to_pylist()).astype(str), kind="stable")
    cold = cold.take(pa.array(order))
    user_idx = cold["user_idx"].to_numpy().astype(np.int64)
    history = cold["history"].to_numpy(zero_copy_only=False)
    n_items = len(items.day_ids)
    # Their seen items (the day's item_idx), as CSR rows in the order of `cold`.
    rows = np.empty(0, np.int64)
    cols = np.empty(0, np.int64)
    if history.any():
        keys = spark.createDataFrame(pa.table({"user_idx": pa.array(user_idx[history], pa.int32())}))
        seen = inputs.inter.join(F.broadcast(keys), "user_idx").toArrow()
        by_idx = np.argsort(user_idx, kind="stable")
        rows = by_idx[np.searchsorted(user_idx[by_idx], seen["user_idx"].to_numpy().astype(np.int64))]
        cols = seen["item_idx"].to_numpy().astype(np.int64)
    csr = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(cold), n_items))
    csr.sum_duplicates()
    longest = int(np.diff(csr.indptr).max()) if len(cold) else 0
    counts = inputs.inter.groupBy("item_idx").agg(F.countDistinct("user_idx").alias("users")).toArrow()
    per_item = np.zeros(n_items, np.int64)
    per_item[counts["item_idx"].to_numpy().astype(np.int64)] = counts["users"].to_numpy()
    n = options.top_n
    pop_items, pop_scores = coldstart.popular_from_counts(per_item, n + longest, items.available)
    features = None
    if content_model is not None and not history.all() and callable(content_model) \
            and not isinstance(content_model, Recommender):
        content_model = content_model()  # loaded only now: some users have no history
    if content_model is not None and coldstart.supports_content(content_model) and not history.all():
        # Only users without history get content-based lists: fetch only their features.
        fresh = np.sort(user_idx[~history])
        feats = _user_features(spark, ts_path, fresh)
        if feats is not None:
            features = np.zeros((len(cold), feats.shape[1]), np.float32)
            features[~history] = feats[np.searchsorted(fresh, user_idx[~history])]
    cold_start = _ColdStart.from_parts(csr, pop_items, pop_scores, content_model, features, items.scored,
                                       n, offset=len(items.item_ids))
    out_items = np.full((len(cold), n), -1, np.int64)
    out_scores = np.full((len(cold), n), -np.inf, np.float32)
    source = np.full(len(cold), POPULAR, np.int8)
    users = np.arange(len(cold))
    cold_start.fill(users, out_items, out_scores, source)
    # Users with history but no vector (new since the model's day): folded in, as in write_topn.
    why = np.full((len(cold), n, reasons.MAX_BECAUSE), -1, np.int64)
    if history.any():
        fold = foldin.FoldIn.for_vectors(items.item_vectors, items.scored)
        support = reasons.VectorSupport(items.item_vectors)
        pos = np.flatnonzero(history)
        ok, it, sc, wh = foldin.fold_in_block(fold, support, csr, pos, items.day_to_model, items.seen_cols,
                                              n, options.exclude_seen)
        out_items[pos[ok]], out_scores[pos[ok]], source[pos[ok]], why[pos[ok]] = it, sc, FOLD_IN, wh
    vocab = np.concatenate([np.asarray(items.item_ids).astype(str), np.asarray(items.day_ids).astype(str)])
    with ParquetSink(Path(out_dir) / COLD_FILE,
                     BatchBuilder(np.asarray(cold["user_id"].to_pylist(), dtype=object), vocab, provenance)) as sink:
        sink.put(Block(users, out_items, out_scores, source, why))
    return np.where((out_items >= 0).any(axis=1), source, -1), sink.rows


def score_warehouse(spark: SparkSession, warehouse: Path | str, ds: str, vectors: Path | str,
                    provenance: Provenance, out_dir: Path | str, options: ScoreConfig,
                    content_model: Recommender | Callable[[], Recommender] | None = None,
                    partitions: int | None = None, rules: Rules | None = None) -> dict[str, Any]:
    """Score every user of the training set of ``ds`` with the vectors folder ``vectors``
    (:func:`recsys.score.vectors.vectors_path`) and write the top-N table into ``out_dir``.

    ``content_model``: the loaded model, used only for cold-start users without history when it
    maps user features to vectors (a hybrid model); or a function that loads it, called only when
    there are such users (the score step passes one: a loaded model holds every user's vector);
    None for the popular list. ``partitions``:
    how many scoring tasks (default: 4 per task slot, ``sparkContext.defaultParallelism``).
    ``rules``: business rules (:mod:`recsys.score.rules`), applied by the same scorer as locally.
    Warehouse, vectors and ``out_dir`` must be on storage the executors share with the driver.
    """
    t0 = time.perf_counter()
    vectors, out_dir = Path(vectors), Path(out_dir)
    info = read_info(vectors)
    if info is None:
        raise FileNotFoundError(f"no complete model vectors at {vectors}: write them with "
                                "recsys.score.vectors.ensure_vectors (the score step does)")
    ts_path = training_set_path(warehouse, ds)
    partitions = partitions or 4 * spark.sparkContext.defaultParallelism
    phases = {}
    tick = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        phases[name] = round(now - tick, 3)
        tick = now

    items = _Items(warehouse, ds, vectors, options, rules)
    inputs = _Inputs(spark, ts_path, vectors, options.exclude_seen)
    phase("items")
    rows = write_model_rows(spark, inputs, items, provenance, options, partitions, out_dir)
    phase("model_rows")
    cold = inputs.cold().toArrow()
    phase("find_cold")
    sources = np.empty(0, np.int8)
    if cold.num_rows:
        sources, cold_rows = _write_cold(spark, inputs, items, ts_path, cold, provenance, out_dir, options,
                                         content_model)
        rows += cold_rows
    phase("cold_rows")
    n_users = inputs.umap.count()
    return {"engine": "spark", "rows": rows, "users": n_users, "users_model": n_users - cold.num_rows,
            "users_popular": int((sources == POPULAR).sum()), "users_content": int((sources == CONTENT).sum()),
            "users_fold_in": int((sources == FOLD_IN).sum()),
            "vectors": str(vectors), "factors": info["factors"], "partitions": partitions,
            "seconds": round(time.perf_counter() - t0, 3), "phases": phases, "options": options.model_dump()}


def write_topn_spark(spark: SparkSession, bundle: Bundle, data: ScoringData, provenance: Provenance,
                     out_dir: Path, options: ScoreConfig, rules: Rules | None = None) -> dict[str, Any]:
    """Spark counterpart of :func:`recsys.score.engine.write_topn` for inputs in memory (tests,
    notebooks): ``data`` and the bundle's vectors are written to a temporary warehouse (local
    disk: ``local[*]`` masters only), then :func:`score_warehouse` scores them. The score step
    calls :func:`score_warehouse` on the real warehouse instead."""
    with tempfile.TemporaryDirectory(prefix="recsys-spark-score-") as tmp:
        ds = "1970-01-01"
        write_training_set(tmp, ds, data.interactions, data.user_ids, data.item_ids, data.item_available)
        vectors = write_bundle_vectors(tmp, provenance.model_name, provenance.model_version,
                                       provenance.mlflow_run_id, bundle, source="memory")
        return score_warehouse(spark, tmp, ds, vectors, provenance, out_dir, options, content_model=bundle.model,
                               rules=rules)
