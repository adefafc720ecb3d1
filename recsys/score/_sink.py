"""Turn top-N blocks into Arrow batches of the published schema and write them in the background.

Building string columns and encoding Parquet cost about as much as the top-k itself, so they run
on a writer thread (pyarrow releases the GIL) while the main thread scores the next block. The
queue is bounded, so at most ``max_pending`` blocks wait in memory.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import queue
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.schema import (
    BECAUSE_HISTORY,
    BECAUSE_POPULAR,
    BECAUSE_PROFILE,
    RECOMMENDATIONS_ARROW,
    SOURCES,
)

# Source codes carried per user in a block (index into SOURCES).
MODEL, POPULAR, CONTENT, FOLD_IN = 0, 1, 2, 3
assert SOURCES[FOLD_IN] == "fold_in"
# `because_reason` of each source code.
REASONS = (BECAUSE_HISTORY, BECAUSE_POPULAR, BECAUSE_PROFILE, BECAUSE_HISTORY)
_BECAUSE_TYPE = RECOMMENDATIONS_ARROW.field("because").type


@dataclasses.dataclass(frozen=True)
class Provenance:
    """Who produced a table: copied into every row."""

    model_name: str
    model_version: str
    mlflow_run_id: str
    generated_at: dt.datetime


@dataclasses.dataclass
class Block:
    """One block of results: ``items``/``scores`` (b, n) with -1/-inf padding at the tail."""

    users: np.ndarray  # int64 positions in the user vocabulary, (b,)
    items: np.ndarray  # int64 positions in the item vocabulary, (b, n)
    scores: np.ndarray  # float32, (b, n)
    source: np.ndarray  # int8 codes into SOURCES, (b,)
    # positions in the item vocabulary of the history items behind each row, (b, n, MAX_BECAUSE),
    # best first, -1 padded; None: no reasons (cold-start blocks)
    because: np.ndarray | None = None


def _constant_strings(value: str, n: int) -> pa.Array:
    # pa.repeat of a string is slow (~0.2 us/row); raw buffers are a memcpy.
    raw = value.encode()
    offsets = np.arange(0, (n + 1) * len(raw), len(raw) or 1, dtype=np.int32)[: n + 1]
    if not raw:
        offsets = np.zeros(n + 1, np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(raw * n))


class BatchBuilder:
    """Blocks -> record batches with ``RECOMMENDATIONS_ARROW``'s schema."""

    def __init__(self, user_ids: np.ndarray, item_ids: np.ndarray, provenance: Provenance) -> None:
        self.users = pa.array(np.asarray(user_ids).astype(str), pa.string())
        self.items = pa.array(np.asarray(item_ids).astype(str), pa.string())
        self.sources = pa.array(SOURCES, pa.string())
        self.reasons = pa.array(REASONS, pa.string())
        self.prov = provenance
        ts = provenance.generated_at
        if ts.tzinfo is None:
            raise ValueError("generated_at must be timezone-aware (UTC)")
        self._ts_us = int(ts.timestamp() * 1_000_000)

    def with_users(self, user_ids: pa.Array) -> "BatchBuilder":
        """The same builder over another user vocabulary (the Spark engine: each Arrow batch's
        ``user_id`` column, block positions indexing it)."""
        out = copy.copy(self)
        out.users = user_ids
        return out

    def build(self, block: Block) -> pa.RecordBatch:
        b, n = block.items.shape
        valid = (block.items >= 0).ravel()
        rows = int(valid.sum())
        user_pos = np.repeat(block.users, n)[valid]
        src = np.repeat(block.source.astype(np.int64), n)[valid]
        rank = np.tile(np.arange(1, n + 1, dtype=np.int32), b)[valid]
        p = self.prov
        cols = [
            self.users.take(pa.array(user_pos)),
            pa.array(rank, pa.int32()),
            self.items.take(pa.array(block.items.ravel()[valid])),
            pa.array(block.scores.ravel()[valid].astype(np.float32), pa.float32()),
            self.sources.take(pa.array(src)),
            _constant_strings(p.model_name, rows),
            _constant_strings(p.model_version, rows),
            _constant_strings(p.mlflow_run_id, rows),
            pa.array(np.full(rows, self._ts_us, np.int64)).view(pa.timestamp("us", tz="UTC")),
            self._because(block, valid),
            self.reasons.take(pa.array(src)),
        ]
        return pa.RecordBatch.from_arrays(cols, schema=RECOMMENDATIONS_ARROW)

    def _because(self, block: Block, valid: np.ndarray) -> pa.Array:
        rows = int(valid.sum())
        if block.because is None:
            return pa.ListArray.from_arrays(pa.array(np.zeros(rows + 1, np.int32)),
                                            pa.array([], pa.string()), type=_BECAUSE_TYPE)
        why = block.because.reshape(-1, block.because.shape[-1])[valid]
        keep = why >= 0
        offsets = np.zeros(rows + 1, np.int32)
        np.cumsum(keep.sum(axis=1), out=offsets[1:])
        return pa.ListArray.from_arrays(pa.array(offsets), self.items.take(pa.array(why[keep])),
                                        type=_BECAUSE_TYPE)


class ParquetSink:
    """Writes blocks to one Parquet file from a background thread; ``close()`` re-raises errors."""

    _STOP = object()

    def __init__(self, path: Path, builder: BatchBuilder, max_pending: int = 2,
                 compression: str = "zstd") -> None:
        self.path, self.builder = Path(path), builder
        self.rows = 0
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        # Dictionaries only where values repeat (ids, provenance), statistics only where readers
        # prune (user_id lookups) or they are cheap: halves the encoding time and shrinks the
        # file versus pyarrow's defaults (measured: 0.55 s -> 0.2 s per 200k rows).
        self._writer = pq.ParquetWriter(
            self.path, RECOMMENDATIONS_ARROW, compression=compression,
            use_dictionary=["user_id", "item_id", "source", "model_name", "model_version",
                            "mlflow_run_id", "generated_at", "because", "because_reason"],
            write_statistics=["user_id", "rank", "score"])
        self._thread = threading.Thread(target=self._run, name="parquet-sink", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._STOP:
                return
            if self._error is not None:
                continue  # drain so the producer never blocks on a dead consumer
            block, builder = item
            try:
                batch = builder.build(block)
                if batch.num_rows:
                    self._writer.write_batch(batch)
                self.rows += batch.num_rows
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                self._error = exc

    def put(self, block: Block, builder: BatchBuilder | None = None) -> None:
        """Queue ``block`` for writing, built by ``builder`` (default: the sink's)."""
        if self._error is not None:
            raise RuntimeError(f"writing {self.path} failed") from self._error
        self._queue.put((block, builder or self.builder))

    def close(self) -> int:
        """Flush, close the file and return the number of rows written."""
        self._queue.put(self._STOP)
        self._thread.join()
        self._writer.close()
        if self._error is not None:
            raise RuntimeError(f"writing {self.path} failed") from self._error
        return self.rows

    def __enter__(self) -> "ParquetSink":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # keep the original error; the half-written file stays in staging
            self._queue.put(self._STOP)
            self._thread.join()
