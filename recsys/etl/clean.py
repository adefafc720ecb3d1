"""Pure DataFrame transforms that route every raw row to exactly one place.

``route(raw, ds, cfg)`` takes the all-string frame of :mod:`recsys.etl.landing` and adds typed
columns plus ``reason`` (a :class:`QuarantineReason` code, null when the row is good) and
``duplicate`` (a good row whose ``event_id`` was already seen earlier in the day). From it
``clean_rows`` and ``quarantine_rows`` project the two output tables. Only Spark SQL functions
are used (ANSI mode safe: every cast that can fail is a ``try_cast``), never Python UDFs.
"""
from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recsys.config import CleanConfig
from recsys.etl.erasures import Erasures
from recsys.etl.reasons import QuarantineReason as R
from recsys.io import parse_ds
from recsys.schema import CLEAN_INTERACTIONS, QUARANTINE_ROWS, RAW_FIELDS

# Epoch values at or above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
_EPOCH_MS_THRESHOLD = 1e11
ID_FIELDS = ("event_id", "user_id", "item_id")
_REPLACEMENT_CHAR = "\ufffd"

# A decimal number written with a point or a signed exponent ("42.0", "4.2e1", "1.0E20",
# "1e+20"); the exponent has at most three digits. Plain digits ("042") and digits-e-digits
# ("12e4", which may be a hex id) are not numbers for this rule.
_NUMBER = "^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]{1,3})?$"


def canonical_id_sql(s: str, regex_match: str = "regexp_like") -> str:
    """SQL (Spark and DuckDB alike) for the canonical form of the id expression ``s``.

    A number that is integral renders as the integer: "42.0", "042.000", "+42.0", "4.2e1",
    "1.2345678E7" and "1e+20" become "42", "42", "42", "42", "12345678" and
    "100000000000000000000"; "-0.0" becomes "0". Exact: plain decimals by string rules, numbers
    with an exponent as DECIMAL(38, 17) (at most 17 fraction digits, as any float renderer
    writes; more, or more than 21 integer digits, keeps the id as sent). Anything else
    (non-integral numbers such as "4.5", plain integers, a negative exponent, digits-e-digits
    such as the hex id "12e4", opaque ids) is returned unchanged. ``regex_match`` is the
    dialect's find-anywhere regex function (Spark ``regexp_like``, DuckDB ``regexp_matches``).

    Most ids leave after substring tests. The expression is kept small on purpose: with three
    large ones in one projection, Spark's generated code ran 4x slower than ``trim`` alone.
    """
    def has(*parts: str) -> str:  # plain substring tests: cheaper than any regex
        return "(" + " OR ".join(f"contains({s}, '{x}')" for x in parts) + ")"

    plain = (f"regexp_replace(regexp_extract({s}, '^(-?)', 1) || coalesce(nullif("
             f"regexp_extract({s}, '^[+-]?0*([0-9]*)', 1), ''), '0'), '^-0$', '0')")
    exact = f"try_cast({s} AS DECIMAL(38, 17))"
    return (f"(CASE WHEN NOT {has('.', 'e', 'E')} THEN {s} "
            f"WHEN NOT {regex_match}({s}, '{_NUMBER}') OR {has('e-', 'E-')} THEN {s} "
            f"WHEN NOT {has('e', 'E')} THEN (CASE WHEN {regex_match}({s}, '[.]0*$') THEN {plain} ELSE {s} END) "
            f"WHEN NOT {has('.', 'e+', 'E+')} OR {regex_match}({s}, '[.][0-9]{{18}}') THEN {s} "
            f"WHEN {exact} = floor({exact}) THEN CAST(CAST({exact} AS DECIMAL(38, 0)) AS STRING) "
            f"ELSE {s} END)")


def canonical_id(name: str) -> Column:
    """The trimmed, canonical id of column ``name`` (:func:`canonical_id_sql`)."""
    return F.expr(canonical_id_sql(f"trim(`{name}`)"))


def id_matches(col: Column, pattern: str) -> Column:
    """``col`` matches ``pattern`` as a whole. Java's ``$`` also matches before a final line
    break ("u1\n"); ``\z`` after the group does not, as in DuckDB's regexp_full_match."""
    return col.rlike(f"^(?:{pattern})\\z")


def text_ok(name: str) -> Column:
    """Column ``name`` is valid UTF-8 without U+FFFD (what readers put where bytes did not
    decode); null is fine."""
    valid = F.expr(f"is_valid_utf8(`{name}`)") & ~F.col(name).contains(_REPLACEMENT_CHAR)
    return F.coalesce(valid, F.lit(True))


def parse_ts(col: Column) -> Column:
    """Timestamp from ISO-8601 (with or without offset; naive means UTC) or epoch s / ms."""
    num = F.expr(f"try_cast({_sql(col)} AS DOUBLE)")
    finite = num.isNotNull() & ~F.isnan(num) & (F.abs(num) < F.lit(1e15))
    secs = F.when(F.abs(num) >= _EPOCH_MS_THRESHOLD, num / 1000.0).otherwise(num)
    from_epoch = F.when(finite, F.timestamp_micros(F.round(secs * 1e6).cast("long")))
    return F.coalesce(from_epoch, F.expr(f"try_cast(trim({_sql(col)}) AS TIMESTAMP)"))


def _sql(col: Column) -> str:
    # Column -> SQL text, so try_cast (not in pyspark.sql.functions for all types) can wrap it.
    return col._jc.toString()  # noqa: SLF001


def _window(ds: str, cfg: CleanConfig) -> tuple[int, int]:
    """[lo, hi) epoch seconds of the ts values accepted for ``ds``."""
    start = dt.datetime.combine(parse_ds(ds), dt.time(), tzinfo=dt.timezone.utc)
    lo = start - dt.timedelta(hours=cfg.late_tolerance_hours)
    hi = start + dt.timedelta(days=1, hours=cfg.early_tolerance_hours)
    return int(lo.timestamp()), int(hi.timestamp())


def typed(raw: DataFrame) -> DataFrame:
    """Canonical ids, lower-cased event type, parsed ``ts_parsed`` and numeric ``value_num``;
    ``text_ok`` is false when the record or a field is not clean UTF-8 text (:func:`text_ok`)."""
    text = None
    for c in ("raw", *RAW_FIELDS):
        text = text_ok(c) if text is None else (text & text_ok(c))
    return raw.select(
        *[canonical_id(c).alias(c) for c in ID_FIELDS],
        F.lower(F.trim("event_type")).alias("event_type"),
        F.col("value").alias("value_raw"),
        F.expr("try_cast(trim(value) AS DOUBLE)").alias("value_num"),
        parse_ts(F.col("ts")).alias("ts_parsed"),
        text.alias("text_ok"), "malformed", "file_reason", "source_file", "raw",
    )


def _blank(c: str) -> Column:
    return F.col(c).isNull() | (F.col(c) == "")


def erased(col: Column, erasures: Erasures) -> Column:
    """``col`` (a canonical user id) is in the tombstone: its keyed hash is one of the erased
    users' (:mod:`recsys.etl.erasures`). Null for a null id."""
    digest = F.sha2(F.concat(F.lit(erasures.prefix), col), 256)
    return digest.isin(sorted(erasures.user_keys))


def row_reason(ds: str, cfg: CleanConfig, erasures: Erasures | None = None) -> Column:
    """The first rule (in QuarantineReason order) a typed row breaks; null when it passes all.

    ``erasures``: the tombstone of ``recsys forget``; a row of an erased user is filed under
    ``erased_user`` before any row-level rule (so no other rule keeps its payload)."""
    lo, hi = _window(ds, cfg)
    bad_id = None
    for c in ID_FIELDS:
        cond = ~id_matches(F.col(c), cfg.id_pattern)
        bad_id = cond if bad_id is None else (bad_id | cond)
    epoch = F.unix_seconds("ts_parsed")
    v = F.col("value_num")
    lo_r, hi_r = cfg.rating_range
    finite = v.isNotNull() & ~F.isnan(v)
    rating_ok = finite & (v >= lo_r) & (v <= hi_r)
    # A purchase without a quantity means one; with one, it must be a positive finite number.
    qty_ok = _blank("value_raw") | (finite & (v > 0) & (v <= cfg.max_quantity))
    value_ok = (F.when(F.col("event_type") == "rating", rating_ok)
                .when(F.col("event_type") == "purchase", qty_ok).otherwise(F.lit(True)))
    internal = list(cfg.internal_users)
    gone = erased(F.col("user_id"), erasures) if erasures else F.lit(False)
    return (
        F.when(F.col("file_reason").isNotNull(), F.col("file_reason"))
        .when(gone, R.ERASED_USER.value)
        .when(~F.col("text_ok"), R.BAD_ENCODING.value)
        .when(F.col("malformed"), R.MALFORMED_ROW.value)
        .when(_blank("event_id") | _blank("user_id") | _blank("item_id"), R.MISSING_ID.value)
        .when(bad_id, R.MALFORMED_ID.value)
        .when(~F.col("event_type").isin(list(cfg.event_types)) | F.col("event_type").isNull(),
              R.UNKNOWN_EVENT_TYPE.value)
        .when(F.col("ts_parsed").isNull(), R.BAD_TS.value)
        .when((epoch < lo) | (epoch >= hi), R.TS_OUT_OF_WINDOW.value)
        .when(~value_ok, R.BAD_VALUE.value)
        .when(F.col("user_id").isin(internal) if internal else F.lit(False), R.INTERNAL_USER.value)
    )


def weight(cfg: CleanConfig) -> Column:
    """Implicit confidence per event type from config; a rating weighs its value times its weight."""
    expr = None
    for etype, w in cfg.event_weights.items():
        val = F.col("value_num") * w if etype == "rating" else F.lit(float(w))
        cond = F.col("event_type") == etype
        expr = F.when(cond, val) if expr is None else expr.when(cond, val)
    return expr.cast("double")


def mark_duplicates(rows: DataFrame) -> DataFrame:
    """``duplicate`` = a good row whose event_id appeared earlier (by ts, then file, then raw).

    Only good rows compete (the window is keyed on event_id *and* goodness), so a quarantined
    row never hides a good one. One shuffle by event_id; no lookup that needs a second pass over
    the input.
    """
    good = F.col("reason").isNull()
    w = Window.partitionBy("event_id", good).orderBy("ts_parsed", "source_file", "raw")
    return rows.withColumn("duplicate", good & (F.row_number().over(w) > 1))


def bot_users(marked: DataFrame, cfg: CleanConfig) -> DataFrame:
    """Users with more kept (good, not duplicate) events in the day than the threshold."""
    kept = marked.where(F.col("reason").isNull() & ~F.col("duplicate"))
    bots = kept.groupBy("user_id").count().where(F.col("count") > cfg.bot_max_events_per_day)
    return bots.select("user_id")


def mark_bots(marked: DataFrame, cfg: CleanConfig, bots: list[str] | None = None) -> DataFrame:
    """Quarantine every kept event of the bot users (reason ``bot_user``) and add ``weight``.

    ``bots`` may be passed in (collected once by a caller that writes the result twice: bot
    users are few); by default they are joined in from :func:`bot_users`.
    """
    kept = F.col("reason").isNull() & ~F.col("duplicate")
    if bots is None:
        df = marked.join(F.broadcast(bot_users(marked, cfg).withColumn("_bot", F.lit(True))),
                         "user_id", "left")
        is_bot = F.col("_bot").isNotNull()
    else:
        df, is_bot = marked, F.col("user_id").isin(list(bots)) if bots else F.lit(False)
    df = df.withColumn(
        "reason", F.when(kept & is_bot, F.lit(R.BOT_USER.value)).otherwise(F.col("reason"))
    ).drop("_bot")  # a no-op when bots were passed in
    return df.withColumn("weight", F.when(F.col("reason").isNull(), weight(cfg)))


def with_reasons(raw: DataFrame, ds: str, cfg: CleanConfig,
                 erasures: Erasures | None = None) -> DataFrame:
    """Typed rows with the row-level ``reason`` (the part of routing that needs no shuffle).

    The columns only the rules read (``value_raw``, ``malformed``, ...) are dropped here, so they
    are neither shuffled nor stored by what follows.
    """
    return typed(raw).withColumn("reason", row_reason(ds, cfg, erasures)).drop(
        "value_raw", "malformed", "file_reason", "text_ok")


def route(raw: DataFrame, ds: str, cfg: CleanConfig, erasures: Erasures | None = None) -> DataFrame:
    """Typed rows with ``reason`` (null = good), ``duplicate`` and ``weight`` columns."""
    return mark_bots(mark_duplicates(with_reasons(raw, ds, cfg, erasures)), cfg)


def clean_rows(routed: DataFrame) -> DataFrame:
    """The clean interactions table (schema.CLEAN_INTERACTIONS)."""
    good = routed.where(F.col("reason").isNull() & ~F.col("duplicate"))
    # Only ratings and purchases carry a value; anything producers put there otherwise is noise.
    value = F.when(F.col("event_type").isin("rating", "purchase"), F.col("value_num"))
    out = good.select("event_id", "user_id", "item_id", "event_type", value.alias("value"),
                      "weight", F.col("ts_parsed").alias("ts"))
    return _conform(out, CLEAN_INTERACTIONS)


def quarantine_rows(routed: DataFrame) -> DataFrame:
    """Rejected rows with their reason (schema.QUARANTINE_ROWS).

    The table stays valid UTF-8 (readable by DuckDB, pyarrow, pandas): a ``raw`` that is not
    has each bad byte replaced by U+FFFD, and ``raw_b64`` keeps its bytes as they came (base64;
    null for every other row). A row of an erased user keeps its reason and file, never its
    payload: ``raw`` and ``raw_b64`` are null.
    """
    valid = F.expr("is_valid_utf8(raw)")
    kept = F.col("reason") != R.ERASED_USER.value
    raw = F.when(kept, F.when(valid, F.col("raw")).otherwise(F.expr("make_valid_utf8(raw)")))
    b64 = F.when(kept & ~valid, F.base64(F.col("raw").cast("binary")))
    out = routed.where(F.col("reason").isNotNull()).select(
        "reason", "source_file", raw.alias("raw"), b64.alias("raw_b64"))
    return _conform(out, QUARANTINE_ROWS)


def _conform(df: DataFrame, schema) -> DataFrame:
    # Column order and types exactly as the schema module names them.
    return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])
