"""Read one landing partition of raw interaction logs into a single all-string DataFrame.

Every format ends in the same shape, so the cleaning rules are written once:
``event_id, user_id, item_id, event_type, value, ts`` (strings, null when absent),
``malformed`` (bool: the row itself could not be parsed), ``source_file`` and ``raw`` (the record
as text: the line for JSON Lines, a JSON rendering of the fields for CSV and Parquet).

File-level problems (missing folder, unknown format, columns that contradict the contract) raise
:class:`LandingError` naming the file *before* anything is read, so a bad drop writes nothing.
Row-level problems never raise: they become ``malformed`` rows.
"""
from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys.schema import RAW_FIELDS

# Fields a CSV header or Parquet schema must name; `value` may be absent (it is optional).
REQUIRED_COLUMNS = ("event_id", "user_id", "item_id", "event_type", "ts")
FORMATS = {".jsonl": "json", ".ndjson": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_CORRUPT = "_corrupt_record"
OUTPUT_COLUMNS = (*RAW_FIELDS, "malformed", "source_file", "raw")


class LandingError(ValueError):
    """A landing folder or file that cannot be read as the raw-log contract says."""


@dataclass(frozen=True)
class LandingFile:
    path: Path
    format: str  # json | csv | parquet
    columns: tuple[str, ...] = ()  # CSV header / Parquet column names (empty for JSON)
    layout: str = ""  # files with equal layouts are read together (Parquet: names and types)


def file_format(path: Path) -> str:
    """``json``/``csv``/``parquet`` from the file name (``.gz`` allowed for text formats)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
        if suffixes and suffixes[-1] == ".parquet":
            raise LandingError(f"{path}: gzip around Parquet is not supported (Parquet compresses itself)")
    fmt = FORMATS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise LandingError(
            f"{path}: unknown file format; expected one of {sorted(FORMATS)} (optionally .gz)")
    return fmt


def is_data_file(path: Path) -> bool:
    # Producers' markers (_SUCCESS, .crc, .tmp files) are not data.
    return path.is_file() and not path.name.startswith(("_", "."))


def _csv_header(path: Path) -> tuple[str, ...]:
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as fh:
        first = fh.readline()
    return tuple(h.strip() for h in next(csv.reader(io.StringIO(first)), []))


def _check_columns(path: Path, columns: tuple[str, ...]) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise LandingError(f"{path}: columns contradict the raw-log contract: missing {missing}; "
                           f"found {list(columns)}")
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise LandingError(f"{path}: duplicate column names {dupes}")


def _parquet_schema(path: Path):
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for a non-Parquet file
        raise LandingError(f"{path}: not a readable Parquet file: {exc}") from exc
    for name in RAW_FIELDS:
        if name in schema.names:
            typ = schema.field(name).type
            if typ.num_fields or str(typ).startswith(("list", "map", "struct", "large_list")):
                raise LandingError(f"{path}: column {name!r} has nested type {typ}; the contract "
                                   "wants a scalar")
    return schema


def discover(folder: Path) -> list[LandingFile]:
    """The data files of one landing partition, validated at the file level, sorted by name."""
    if not folder.is_dir():
        raise LandingError(f"{folder}: landing folder does not exist")
    out = []
    for path in sorted(p for p in folder.iterdir() if is_data_file(p)):
        fmt = file_format(path)
        if path.stat().st_size == 0:
            continue  # the contract: empty files are ignored
        columns: tuple[str, ...] = ()
        layout = ""
        if fmt == "csv":
            columns = _csv_header(path)
            if not any(columns):
                continue  # a gzip of nothing, or only blank lines
            layout = "\x1f".join(columns)
        elif fmt == "parquet":
            schema = _parquet_schema(path)
            columns, layout = tuple(schema.names), str(schema.remove_metadata())
        if fmt != "json":
            _check_columns(path, columns)
        out.append(LandingFile(path, fmt, columns, layout))
    return out


def _contract_columns(df: DataFrame, present: tuple[str, ...]) -> list:
    return [
        (F.col(f"`{c}`").cast("string") if c in present else F.lit(None).cast("string")).alias(c)
        for c in RAW_FIELDS
    ]


def _read_json(spark: SparkSession, files: list[Path]) -> DataFrame:
    schema = T.StructType([T.StructField(c, T.StringType()) for c in (*RAW_FIELDS, _CORRUPT)])
    lines = spark.read.text([str(f) for f in files]).select(
        F.col("value").alias("raw"), F.col("_metadata.file_name").alias("source_file"))
    # Blank lines are not records (common at the end of files); they are not counted.
    lines = lines.where(F.trim("raw") != "")
    parsed = lines.select("*", F.from_json("raw", schema, {
        "mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT}).alias("j"))
    return parsed.select(
        *[F.col(f"j.{c}").alias(c) for c in RAW_FIELDS],
        (F.col("j").isNull() | F.col(f"j.{_CORRUPT}").isNotNull()).alias("malformed"),
        "source_file", "raw",
    )


def _read_csv(spark: SparkSession, files: list[Path], header: tuple[str, ...]) -> DataFrame:
    # Schema fields named as the header (checked non-empty and unique), so Spark's header
    # check agrees; positional names only for headers with blank names.
    names = list(header) if all(header) else [f"_c{i}" for i in range(len(header))]
    schema = T.StructType([T.StructField(n, T.StringType()) for n in (*names, _CORRUPT)])
    # escape='"': producers (Python csv, pandas, Excel) double quotes inside quoted fields (RFC 4180).
    df = spark.read.csv([str(f) for f in files], header=True, schema=schema, mode="PERMISSIVE",
                        columnNameOfCorruptRecord=_CORRUPT, enforceSchema=True, escape='"')
    df = df.select("*", F.col("_metadata.file_name").alias("source_file"))
    renamed = df.select(*[F.col(f"`{n}`").alias(h) for n, h in zip(names, header)], _CORRUPT, "source_file")
    record = F.to_json(F.struct(*[F.col(f"`{h}`") for h in header]))
    return renamed.select(
        *_contract_columns(renamed, header),
        F.col(_CORRUPT).isNotNull().alias("malformed"),
        "source_file",
        F.coalesce(F.col(_CORRUPT), record).alias("raw"),
    )


def _read_parquet(spark: SparkSession, files: list[Path], columns: tuple[str, ...]) -> DataFrame:
    df = spark.read.parquet(*[str(f) for f in files])
    df = df.select("*", F.col("_metadata.file_name").alias("source_file"))
    record = F.to_json(F.struct(*[F.col(f"`{c}`") for c in columns]))
    return df.select(*_contract_columns(df, columns), F.lit(False).alias("malformed"),
                     "source_file", record.alias("raw"))


def read_landing(spark: SparkSession, folder: Path) -> tuple[DataFrame | None, list[LandingFile]]:
    """Read every data file of ``folder``; returns (rows or None when there are none, files)."""
    files = discover(folder)
    parts: list[DataFrame] = []
    json_files = [f.path for f in files if f.format == "json"]
    if json_files:
        parts.append(_read_json(spark, json_files))
    # CSV headers and Parquet schemas may differ between files: one read per distinct layout.
    for fmt, reader in (("csv", _read_csv), ("parquet", _read_parquet)):
        groups: dict[str, list[LandingFile]] = {}
        for f in files:
            if f.format == fmt:
                groups.setdefault(f.layout, []).append(f)
        for _, group in sorted(groups.items()):
            parts.append(reader(spark, [f.path for f in group], group[0].columns))
    if not parts:
        return None, files
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out, files
