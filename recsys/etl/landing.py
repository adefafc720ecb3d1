"""Read one landing partition of raw interaction logs into a single all-string DataFrame.

Every format ends in the same shape, so the cleaning rules are written once:
``event_id, user_id, item_id, event_type, value, ts`` (strings, null when absent),
``malformed`` (bool: the row itself could not be parsed), ``source_file``, ``raw`` (the record
as text: the line for JSON Lines, a JSON rendering of the fields for CSV and Parquet) and
``file_reason`` (a file-level :class:`QuarantineReason`, null for rows of a sound file).

Hostile files never fail the day and never vanish (only a missing folder raises
:class:`LandingError`). What is wrong with a file is found before Spark reads it:

* a file that cannot be read at all (unknown format, a ``.gz`` that is not gzip, not Parquet,
  a schema Spark cannot read) becomes one row with ``file_reason = unreadable_file``;
* a gzip stream that breaks off or is corrupt after some rows: the rows before the damage are
  read, and one row with ``file_reason = truncated_file`` stands for the rest;
* a CSV header or Parquet schema that contradicts the contract (a contract column missing,
  duplicate names, a nested contract column): every row is read and carries
  ``file_reason = bad_columns``.

Those rows have null fields and a ``raw`` that says what is wrong. Row-level problems are
``malformed`` rows. Columns are resolved by position, never by name, so any column name (a
backtick, a dot, ``_metadata``, names differing only in case) reads.
"""
from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys.etl.reasons import QuarantineReason as R
from recsys.schema import RAW_FIELDS

# Fields a CSV header or Parquet schema must name; `value` may be absent (it is optional).
REQUIRED_COLUMNS = ("event_id", "user_id", "item_id", "event_type", "ts")
FORMATS = {".jsonl": "json", ".ndjson": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_CORRUPT = "_corrupt_record"
OUTPUT_COLUMNS = (*RAW_FIELDS, "malformed", "source_file", "raw", "file_reason")
_BOM = "\ufeff"
# Spark's CSV reader skips lines that are blank after Scala's trim (characters <= U+0020).
_SCALA_BLANK = "".join(chr(c) for c in range(33))
_GZIP_CHUNK = 1 << 20
_CASE_SENSITIVE = "spark.sql.caseSensitive"


class LandingError(ValueError):
    """A landing folder that does not exist, or a file whose name names no known format."""


@dataclasses.dataclass(frozen=True)
class LandingFile:
    path: Path
    format: str  # json | csv | parquet; "" when the name says none of them
    columns: tuple[str, ...] = ()  # CSV header / Parquet column names (empty for JSON)
    layout: str = ""  # files with equal layouts are read together (Parquet: names and types)
    rows_reason: str | None = None  # bad_columns: every row read is quarantined under it
    lost_reason: str | None = None  # unreadable_file / truncated_file: one row for the unread part
    detail: str = ""  # what is wrong, in words (the raw text of that one row)
    empty: bool = False  # no bytes, or no header: nothing to read, nothing lost
    rows: int | None = None  # rows the file declares (Parquet footer), else unknown

    @property
    def readable(self) -> bool:
        """Spark reads rows from it (all of them, or those before the damage)."""
        return not self.empty and self.lost_reason != R.UNREADABLE_FILE

    @property
    def salvage(self) -> bool:
        """Damaged: read with ``ignoreCorruptFiles``, which keeps the rows before the damage."""
        return self.lost_reason == R.TRUNCATED_FILE


def _format_of(path: Path) -> tuple[str, str]:
    """(format, "") or ("", what is wrong with the name)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
        if suffixes and suffixes[-1] == ".parquet":
            return "", "gzip around Parquet is not supported (Parquet compresses itself)"
    fmt = FORMATS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        return "", f"unknown file format; expected one of {sorted(FORMATS)} (optionally .gz)"
    return fmt, ""


def file_format(path: Path) -> str:
    """``json``/``csv``/``parquet`` from the file name (``.gz`` allowed for text formats)."""
    fmt, problem = _format_of(path)
    if not fmt:
        raise LandingError(f"{path}: {problem}")
    return fmt


def is_data_file(path: Path) -> bool:
    # Producers' markers (_SUCCESS, .crc, .tmp files) are not data.
    return path.is_file() and not path.name.startswith(("_", "."))


def gzip_damage(path: Path) -> tuple[str, str] | None:
    """``None`` for a sound gzip file (one or more members), else (file-level reason, what is
    wrong): ``unreadable_file`` when it is not gzip at all, ``truncated_file`` when the stream
    breaks off or is corrupt (the rows before the damage can still be read). Streams the file
    once; memory stays bounded."""
    with open(path, "rb") as fh:
        if fh.read(2) != b"\x1f\x8b":
            return R.UNREADABLE_FILE, "not a gzip file"
    out, fed, pending = 0, False, b""
    d = zlib.decompressobj(zlib.MAX_WBITS | 16)
    try:
        with open(path, "rb") as fh:
            while chunk := pending or fh.read(_GZIP_CHUNK):
                pending, fed = b"", True
                out += len(d.decompress(chunk, _GZIP_CHUNK))
                while d.unconsumed_tail and not d.eof:
                    out += len(d.decompress(d.unconsumed_tail, _GZIP_CHUNK))
                if d.eof:  # the end of one member: what follows must be another member
                    pending, fed = d.unused_data, False
                    d = zlib.decompressobj(zlib.MAX_WBITS | 16)
    except zlib.error as exc:
        return R.TRUNCATED_FILE, f"the gzip stream is corrupt after about {out} bytes of text ({exc})"
    if fed:
        return R.TRUNCATED_FILE, f"the gzip stream ends early, after {out} bytes of text"
    return None


def _text(path: Path):
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    return opener(path, "rt", encoding="utf-8-sig", errors="replace", newline="")


def csv_header(path: Path) -> tuple[str, ...]:
    """The header as Spark reads it: the first line that is not blank, without a UTF-8 BOM."""
    with _text(path) as fh:
        for line in fh:
            if line.lstrip(_BOM).strip(_SCALA_BLANK):
                return tuple(h.strip() for h in next(csv.reader(io.StringIO(line.lstrip(_BOM)))))
    return ()


def _columns_problem(columns: tuple[str, ...]) -> str:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    problems = []
    if missing:
        problems.append(f"missing contract columns {missing}")
    if dupes:
        problems.append(f"duplicate column names {dupes}")
    return "; ".join(problems) + (f" (found {list(columns)})" if problems else "")


def _nested(typ) -> bool:
    return bool(typ.num_fields) or str(typ).startswith(("list", "map", "struct", "large_list"))


def inspect_file(path: Path, case_sensitive: bool = True) -> LandingFile:
    """What Spark can read of one landing file, decided before it reads anything."""
    fmt, problem = _format_of(path)
    if not fmt:
        return LandingFile(path, "", lost_reason=R.UNREADABLE_FILE, detail=problem)
    if path.stat().st_size == 0:
        return LandingFile(path, fmt, empty=True)  # no records: listed in the books with 0 rows
    lost, detail = (gzip_damage(path) if path.suffix.lower() == ".gz" else None) or (None, "")
    if lost == R.UNREADABLE_FILE:
        return LandingFile(path, fmt, lost_reason=lost, detail=detail)
    if lost:
        detail += "; the rows before the damage were read, this row stands for the rest"
    if fmt == "json":
        return LandingFile(path, fmt, lost_reason=lost, detail=detail)
    if fmt == "csv":
        try:
            columns = csv_header(path)
        except (OSError, EOFError, zlib.error) as exc:  # damage before the end of the header
            return LandingFile(path, fmt, lost_reason=R.UNREADABLE_FILE, detail=f"{detail} ({exc})")
        if not any(columns):  # a gzip of nothing, or only blank lines
            return LandingFile(path, fmt, empty=True, lost_reason=lost, detail=detail)
        problem = _columns_problem(columns)
        return LandingFile(path, fmt, columns, "\x1f".join(columns),
                           rows_reason=R.BAD_COLUMNS if problem else None, lost_reason=lost,
                           detail=detail or problem)
    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
    except Exception as exc:  # pyarrow raises several types for a non-Parquet file
        return LandingFile(path, fmt, lost_reason=R.UNREADABLE_FILE,
                           detail=f"not a readable Parquet file: {exc}")
    columns, rows = tuple(schema.names), meta.num_rows
    unread = None
    if len(set(columns)) < len(columns):
        unread = f"Spark cannot read duplicate column names {list(columns)}"
    elif not case_sensitive and len({c.lower() for c in columns}) < len(columns):
        unread = (f"column names differ only in case {list(columns)}; read it with "
                  f"{_CASE_SENSITIVE}=true")
    if unread:
        return LandingFile(path, fmt, columns, lost_reason=R.UNREADABLE_FILE, rows=rows,
                           detail=f"{unread} ({rows} rows)")
    problem = _columns_problem(columns)
    nested = [c for c in RAW_FIELDS if c in columns and _nested(schema.field(c).type)]
    if nested:
        problem = "; ".join(filter(None, [problem, f"contract columns of nested type {nested}"]))
    return LandingFile(path, fmt, columns, str(schema.remove_metadata()),
                       rows_reason=R.BAD_COLUMNS if problem else None, detail=problem, rows=rows)


def discover(folder: Path, case_sensitive: bool = True) -> list[LandingFile]:
    """Every data file of one landing partition, inspected (:func:`inspect_file`), sorted by name."""
    if not folder.is_dir():
        raise LandingError(f"{folder}: landing folder does not exist")
    paths = sorted(p for p in folder.iterdir() if is_data_file(p))
    # zlib and pyarrow release the GIL: compressed files are checked in parallel.
    with ThreadPoolExecutor(max_workers=max(1, min(4, len(paths)))) as pool:
        return list(pool.map(lambda p: inspect_file(p, case_sensitive), paths))


def _source_file(df: DataFrame) -> Column:
    # Spark URL-encodes the file name (a space is %20, % is %25) but leaves '+' alone; decoding it
    # gives the name on disk, the one the books know. metadataColumn: even if the file has a
    # column named _metadata.
    name = df.metadataColumn("_metadata").getField("file_name")
    return F.coalesce(F.try_url_decode(F.replace(name, F.lit("+"), F.lit("%2B"))), name)


def _reader(spark: SparkSession, salvage: bool):
    # Damaged gzip files only: keep the rows before the damage (the loss is counted apart).
    return spark.read.option("ignoreCorruptFiles", "true") if salvage else spark.read


def _read_json(spark: SparkSession, files: list[LandingFile], salvage: bool) -> DataFrame:
    text = _reader(spark, salvage).text([str(f.path) for f in files])
    lines = text.select(F.col("value").alias("raw"), _source_file(text).alias("source_file"))
    # Blank lines are not records (common at the end of files); they are not counted.
    lines = lines.where(F.trim("raw") != "")
    # The line is parsed as the value of a key followed by one more key: anything after the
    # first JSON value (a second object, a stray brace) breaks the wrapper, so the line is
    # malformed instead of silently losing its tail. A leading BOM is not part of the record.
    line = F.regexp_replace("raw", f"^{_BOM}", "")
    wrapped = F.concat(F.lit('{"record":'), line, F.lit('\n,"end_of_line":1}'))
    record = T.StructType([T.StructField(c, T.StringType()) for c in RAW_FIELDS])
    schema = T.StructType([T.StructField("record", record), T.StructField("end_of_line", T.IntegerType()),
                           T.StructField(_CORRUPT, T.StringType())])
    j = F.from_json(wrapped, schema, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT})
    parsed = lines.select("*", j.alias("j"))
    bad = (F.col("j").isNull() | F.col(f"j.{_CORRUPT}").isNotNull() | F.col("j.record").isNull()
           | F.col("j.end_of_line").isNull())
    return parsed.select(
        *[F.when(~bad, F.col(f"j.record.{c}")).alias(c) for c in RAW_FIELDS],
        bad.alias("malformed"), "source_file", "raw",
        F.lit(None).cast("string").alias("file_reason"),
    )


def _contract(names: list[str], header: tuple[str, ...], rows_reason: str | None) -> list[Column]:
    # By position: the first column named exactly as the contract field. A file that breaks the
    # contract has its rows quarantined whole (raw keeps everything), so its fields stay null.
    def pick(c: str) -> Column:
        if rows_reason is None and c in header:
            return F.col(names[header.index(c)]).cast("string")
        return F.lit(None).cast("string")
    return [pick(c).alias(c) for c in RAW_FIELDS]


def _record(names: list[str], header: tuple[str, ...]) -> Column:
    # alias() takes any name literally (backticks, dots, empty): names are never parsed.
    return F.to_json(F.struct(*[F.col(n).alias(h) for n, h in zip(names, header)]))


def _read_csv(spark: SparkSession, files: list[LandingFile], salvage: bool) -> DataFrame:
    header = files[0].columns
    names = [f"_c{i}" for i in range(len(header))]
    schema = T.StructType([T.StructField(n, T.StringType()) for n in (*names, _CORRUPT)])
    # escape='"': producers (Python csv, pandas, Excel) double quotes inside quoted fields (RFC 4180).
    df = _reader(spark, salvage).csv(
        [str(f.path) for f in files], header=True, schema=schema, mode="PERMISSIVE",
        columnNameOfCorruptRecord=_CORRUPT, enforceSchema=True, escape='"')
    reason = files[0].rows_reason
    return df.select(
        *_contract(names, header, reason),
        F.col(_CORRUPT).isNotNull().alias("malformed"),
        _source_file(df).alias("source_file"),
        F.coalesce(F.col(_CORRUPT), _record(names, header)).alias("raw"),
        F.lit(reason).cast("string").alias("file_reason"),
    )


def _read_parquet(spark: SparkSession, files: list[LandingFile], salvage: bool) -> DataFrame:
    df = spark.read.parquet(*[str(f.path) for f in files])
    header = files[0].columns
    names = [f"_c{i}" for i in range(len(df.columns))]
    if len(names) != len(header):
        raise ValueError(f"Spark reads {len(names)} columns where Parquet declares {list(header)}")
    source = _source_file(df)
    # toDF renames by position without resolving names: USER_ID next to user_id, a backtick...
    positional = df.toDF(*names)
    reason = files[0].rows_reason
    return positional.select(
        *_contract(names, header, reason), F.lit(False).alias("malformed"),
        source.alias("source_file"), _record(names, header).alias("raw"),
        F.lit(reason).cast("string").alias("file_reason"),
    )


def _raw_schema() -> T.StructType:
    return T.StructType([T.StructField(c, T.BooleanType() if c == "malformed" else T.StringType())
                         for c in OUTPUT_COLUMNS])


def _lost_rows(spark: SparkSession, files: list[LandingFile]) -> DataFrame:
    """One row per file for the part Spark cannot read (all of it, or what follows the damage)."""
    rows = [(*[None] * len(RAW_FIELDS), False, f.path.name, f.detail, str(f.lost_reason))
            for f in files]
    return spark.createDataFrame(rows, _raw_schema())


def read_landing(spark: SparkSession, folder: Path) -> tuple[DataFrame | None, list[LandingFile]]:
    """Read every data file of ``folder``; returns (rows or None when there are none, files).

    A group of files Spark refuses to read (its schema inference fails) is filed as
    ``unreadable_file`` instead of failing the day. Parquet files whose column names differ
    only in case need ``spark.sql.caseSensitive=true`` (the clean step sets it); otherwise they
    are ``unreadable_file`` too.
    """
    case_sensitive = spark.conf.get(_CASE_SENSITIVE, "false").lower() == "true"
    files = discover(folder, case_sensitive)
    parts: list[DataFrame] = []
    unreadable: dict[Path, str] = {}
    # One read per format, layout (CSV headers and Parquet schemas may differ between files)
    # and soundness (damaged files are read apart, with ignoreCorruptFiles).
    groups: dict[tuple, list[LandingFile]] = {}
    for f in files:
        if f.readable:
            groups.setdefault((f.format, "" if f.format == "json" else f.layout, f.salvage), []).append(f)
    readers = {"json": _read_json, "csv": _read_csv, "parquet": _read_parquet}
    for (fmt, _, salvage), group in sorted(groups.items()):
        try:
            parts.append(readers[fmt](spark, group, salvage))
        except (PySparkException, Py4JJavaError, ValueError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            for f in group:
                rows = "" if f.rows is None else f" ({f.rows} rows)"
                unreadable[f.path] = f"Spark cannot read it{rows}: {msg[:500]}"
    if unreadable:
        files = [dataclasses.replace(f, lost_reason=R.UNREADABLE_FILE, detail=unreadable[f.path])
                 if f.path in unreadable else f for f in files]
    lost = [f for f in files if f.lost_reason]
    if lost:
        parts.append(_lost_rows(spark, lost))
    if not parts:
        return None, files
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out, files
