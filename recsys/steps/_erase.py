"""File- and partition-level rewriting for :mod:`recsys.steps.forget` (pyarrow only).

A partition is never edited in place: its files are rewritten (or copied) into a staging folder
and the folder is swapped in by :func:`recsys.io.publish_dir`, so readers see the whole old or
the whole new partition. Parquet files are streamed batch by batch (memory: one batch).
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys.io import SUCCESS

Transform = Callable[[pa.Table], pa.Table]

# Columns that hold a user id as their whole value, and free text that may mention one.
ID_COLUMNS = ("user_id",)
TEXT_COLUMNS = ("raw",)


def token_pattern(user_ids: Iterable[str]) -> str:
    """RE2 pattern: any of ``user_ids`` as a whole token (not inside a longer run of letters,
    digits or ``_``), also in its JSON-escaped spelling."""
    forms = set()
    for u in user_ids:
        forms.add(u)
        forms.add(json.dumps(u)[1:-1])  # how a JSON line spells it ("\u00e9", "\"")
    alts = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
    return f"(?:^|[^0-9A-Za-z_])(?:{alts})(?:$|[^0-9A-Za-z_])"


def mentions(text: pa.ChunkedArray | pa.Array, pattern: str) -> pa.ChunkedArray:
    """Boolean per value: the text contains a token of ``pattern`` (null text: false)."""
    return pc.fill_null(pc.match_substring_regex(text, pattern), False)


def drop_users(column: str, user_ids: list[str]) -> Transform:
    """Rows whose ``column`` is one of ``user_ids`` are removed."""
    values = pa.array(user_ids, pa.string())

    def run(t: pa.Table) -> pa.Table:
        return t.filter(pc.invert(pc.fill_null(pc.is_in(t[column], value_set=values), False)))
    return run


def blank_payload(pattern: str, columns: tuple[str, ...] = ("raw", "raw_b64")) -> Transform:
    """Quarantine rows whose ``raw`` mentions a user keep their reason; their payload is nulled."""
    def run(t: pa.Table) -> pa.Table:
        hit = mentions(t["raw"], pattern)
        for c in columns:
            if c in t.column_names:
                i = t.column_names.index(c)
                t = t.set_column(i, t.field(c), pc.if_else(hit, pa.nulls(len(t), t[c].type), t[c]))
        return t
    return run


def remap_users(remap: np.ndarray) -> Transform:
    """Training-set rows: drop users whose new index is -1, renumber the rest (``user_idx``)."""
    def run(t: pa.Table) -> pa.Table:
        old = t["user_idx"].to_numpy().astype(np.int64)
        new = remap[old]
        keep = new >= 0
        t = t.filter(pa.array(keep))
        i = t.column_names.index("user_idx")
        return t.set_column(i, t.field("user_idx"), pa.array(new[keep], t.field("user_idx").type))
    return run


def _int96(pf: pq.ParquetFile) -> bool:
    schema = pf.schema
    return any(schema.column(i).physical_type == "INT96" for i in range(len(schema)))


def rewrite_file(src: Path, dst: Path, transform: Transform) -> tuple[int, int]:
    """Stream ``src`` through ``transform`` into ``dst`` (same schema, zstd); (rows in, rows out).

    Timestamps Spark wrote as INT96 stay INT96, so Spark reads the new file as it read the old.
    """
    pf = pq.ParquetFile(src)
    schema = pf.schema_arrow
    rows_in = rows_out = 0
    with pq.ParquetWriter(dst, schema, compression="zstd",
                          use_deprecated_int96_timestamps=_int96(pf)) as writer:
        for batch in pf.iter_batches(batch_size=65_536):
            table = pa.Table.from_batches([batch], schema=schema)
            out = transform(table)
            rows_in += table.num_rows
            rows_out += out.num_rows
            writer.write_table(out.cast(schema))
    return rows_in, rows_out


def parquet_files(folder: Path) -> list[Path]:
    """Data files of a folder, as readers see them (``_`` and ``.`` names skipped)."""
    return sorted(p for p in folder.rglob("*.parquet")
                  if not any(part.startswith(("_", ".")) for part in p.relative_to(folder).parts))


def any_row(folder: Path, column: str, test: Callable[[pa.ChunkedArray], pa.ChunkedArray]) -> bool:
    """True when ``test`` holds for a value of ``column`` in a Parquet file of ``folder``."""
    for f in parquet_files(folder):
        if column not in pq.ParquetFile(f).schema_arrow.names:
            continue
        if pc.any(test(pq.read_table(f, columns=[column])[column])).as_py():
            return True
    return False


def count_rows(folder: Path, column: str, test: Callable[[pa.ChunkedArray], pa.ChunkedArray]) -> int:
    """Rows of the Parquet files of ``folder`` for which ``test`` holds on ``column``."""
    n = 0
    for f in parquet_files(folder):
        if column in pq.ParquetFile(f).schema_arrow.names:
            n += pc.sum(test(pq.read_table(f, columns=[column])[column])).as_py() or 0
    return n


def copy_partition(live: Path, staged: Path, transforms: dict[str, Transform]) -> dict[str, list[int]]:
    """Copy ``live`` into ``staged``, rewriting the Parquet files of the subfolders named in
    ``transforms`` (``""`` = the partition folder itself); return {subfolder: [rows in, rows out]}.

    ``_SUCCESS`` is left out (the publish writes it) and so are Hadoop ``.crc`` side files (they
    would not match the rewritten files).
    """
    counts: dict[str, list[int]] = {}
    for src in sorted(live.rglob("*")):
        rel = src.relative_to(live)
        dst = staged / rel
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
            continue
        if rel.name == SUCCESS or rel.name.endswith(".crc"):
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        sub = "" if len(rel.parts) == 1 else rel.parts[0]
        if rel.suffix == ".parquet" and sub in transforms and not rel.name.startswith(("_", ".")):
            n_in, n_out = rewrite_file(src, dst, transforms[sub])
            c = counts.setdefault(sub, [0, 0])
            c[0] += n_in
            c[1] += n_out
        else:
            shutil.copy2(src, dst)
    return counts


def rewrite_in_place(folder: Path, transform: Transform) -> int:
    """Rewrite each Parquet file of a folder no reader treats as live (a staged table), one
    file at a time: written beside, then renamed over the old one. Returns rows removed."""
    removed = 0
    for f in parquet_files(folder):
        tmp = f.with_name(f".{f.name}.forget")
        n_in, n_out = rewrite_file(f, tmp, transform)
        os.replace(tmp, f)
        f.with_name(f".{f.name}.crc").unlink(missing_ok=True)
        removed += n_in - n_out
    return removed


def find_traces(root: Path, user_ids: list[str]) -> list[str]:
    """Files under ``root`` that still hold one of ``user_ids``: a Parquet ``user_id`` value
    equal to one, a ``raw`` text or any other file's text mentioning one as a token
    (:func:`token_pattern`). Item ids and other columns are not searched: they may spell the same
    text as a user id without being one."""
    pattern = token_pattern(user_ids)
    regex = re.compile(pattern)
    values = pa.array(user_ids, pa.string())
    found = []
    for f in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        if f.suffix == ".parquet":
            names = pq.ParquetFile(f).schema_arrow.names
            cols = [c for c in names if c in ID_COLUMNS or c in TEXT_COLUMNS]
            if not cols:
                continue
            t = pq.read_table(f, columns=cols)
            hit = any(pc.any(pc.is_in(t[c], value_set=values)).as_py() for c in cols if c in ID_COLUMNS)
            hit = hit or any(pc.any(mentions(t[c], pattern)).as_py() for c in cols if c in TEXT_COLUMNS)
        elif f.suffix == ".json":
            hit = any(regex.search(s) for s in _strings(json.loads(f.read_text(errors="replace"))))
        elif f.suffix == ".csv":
            with open(f, newline="", errors="replace") as fh:
                hit = any(row.get("user_id") in user_ids for row in csv.DictReader(fh))
        else:
            continue
        if hit:
            found.append(str(f))
    return found


def _strings(doc) -> Iterable[str]:
    """Every string (keys included) of a JSON document."""
    if isinstance(doc, str):
        yield doc
    elif isinstance(doc, dict):
        for k, v in doc.items():
            yield k
            yield from _strings(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _strings(v)
